package raftlog

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	pb "go.etcd.io/raft/v3/raftpb"

	"github.com/metastore/metastore/engine/ddtest"
)

// TestStorageDataDriven runs the scripts in testdata/storage*.txt: a
// command per block, its expected output under "----". Regenerate the
// expectations with: go test ./raftlog -run DataDriven -rewrite
//
//	open [cache=<bytes>]                 (re)open Storage on the same engine
//	save [term= vote= commit=] [ents=<i>/<t>,...] [snap=<i>/<t> voters=<ids>]
//	compact index=<i>
//	create-snapshot index=<i> [voters=<ids>]
//	snapshot-and-compact index=<i> voters=<ids>
//	term i=<i>
//	entries lo=<i> hi=<i> [max=<bytes>]
//	state
func TestStorageDataDriven(t *testing.T) {
	ddtest.Scripts(t, func(t *testing.T, path string) {
		if !strings.Contains(path, "storage") {
			return
		}
		db := openTestEngine(t, t.TempDir())
		defer db.Close()
		var s *Storage
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			args := map[string]string{}
			for _, a := range d.CmdArgs {
				args[a.Key] = strings.Join(a.Vals, ",")
			}
			u := func(k string) uint64 {
				if args[k] == "" {
					return 0
				}
				v, err := strconv.ParseUint(args[k], 10, 64)
				if err != nil {
					d.Fatalf(t, "%s: %v", k, err)
				}
				return v
			}
			errOr := func(err error, ok string) string {
				if err != nil {
					return "error: " + err.Error() + "\n"
				}
				return ok
			}
			switch d.Cmd {
			case "open":
				r, err := Open(db, StorageConfig{EntryCacheBytes: int64(u("cache"))})
				if err == nil {
					s = r
				}
				return errOr(err, "ok\n")
			case "save":
				hs := pb.HardState{Term: u("term"), Vote: u("vote"), Commit: u("commit")}
				var snap pb.Snapshot
				if args["snap"] != "" {
					i, tm := parseIndexTerm(t, d, args["snap"])
					snap.Metadata = pb.SnapshotMetadata{Index: i, Term: tm,
						ConfState: pb.ConfState{Voters: parseIDs(t, d, args["voters"])}}
				}
				var ents []pb.Entry
				if args["ents"] != "" {
					for _, it := range strings.Split(args["ents"], ",") {
						i, tm := parseIndexTerm(t, d, it)
						ents = append(ents, pb.Entry{Index: i, Term: tm, Data: []byte(fmt.Sprintf("v%d.%d", i, tm))})
					}
				}
				before := s.SyncedWrites()
				err := s.Save(hs, ents, snap)
				return errOr(err, fmt.Sprintf("synced=%t\n", s.SyncedWrites() > before))
			case "compact":
				return errOr(s.Compact(u("index")), "ok\n")
			case "create-snapshot":
				var cs *pb.ConfState
				if args["voters"] != "" {
					cs = &pb.ConfState{Voters: parseIDs(t, d, args["voters"])}
				}
				snap, err := s.CreateSnapshot(u("index"), cs, nil)
				return errOr(err, fmt.Sprintf("snapshot %s\n", fmtSnap(snap)))
			case "snapshot-and-compact":
				return errOr(s.SnapshotAndCompact(u("index"), pb.ConfState{Voters: parseIDs(t, d, args["voters"])}), "ok\n")
			case "term":
				tm, err := s.Term(u("i"))
				return errOr(err, fmt.Sprintf("%d\n", tm))
			case "entries":
				maxSize := uint64(math.MaxUint64)
				if args["max"] != "" {
					maxSize = u("max")
				}
				ents, err := s.Entries(u("lo"), u("hi"), maxSize)
				return errOr(err, fmtEnts(ents)+"\n")
			case "state":
				return fmtState(s)
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
				return ""
			}
		})
	})
}

func parseIndexTerm(t *testing.T, d *datadriven.TestData, s string) (uint64, uint64) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.ParseUint(a, 10, 64)
	tm, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		d.Fatalf(t, "want <index>/<term>, got %q", s)
	}
	return i, tm
}

func parseIDs(t *testing.T, d *datadriven.TestData, s string) []uint64 {
	var ids []uint64
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' }) {
		id, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			d.Fatalf(t, "bad id %q", f)
		}
		ids = append(ids, id)
	}
	return ids
}

func fmtEnts(ents []pb.Entry) string {
	parts := make([]string, len(ents))
	for i, e := range ents {
		parts[i] = fmt.Sprintf("%d/%d:%s", e.Index, e.Term, e.Data)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func fmtSnap(s pb.Snapshot) string {
	return fmt.Sprintf("index=%d term=%d voters=%v", s.Metadata.Index, s.Metadata.Term, s.Metadata.ConfState.Voters)
}

func fmtState(s *Storage) string {
	var b strings.Builder
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	s.mu.Lock()
	runs := make([]string, len(s.mu.terms.runs))
	for i, r := range s.mu.terms.runs {
		runs[i] = fmt.Sprintf("%d:%d", r.first, r.term)
	}
	s.mu.Unlock()
	hs, _, _ := s.InitialState()
	snap, _ := s.Snapshot()
	fmt.Fprintf(&b, "first=%d last=%d term-runs=[%s]\n", first, last, strings.Join(runs, " "))
	fmt.Fprintf(&b, "hardstate term=%d vote=%d commit=%d\n", hs.Term, hs.Vote, hs.Commit)
	fmt.Fprintf(&b, "snapshot %s\n", fmtSnap(snap))
	fmt.Fprintf(&b, "cache %d entries %d bytes\n", s.CacheEntries(), s.CacheBytes())
	if last >= first {
		ents, err := s.Entries(first, last+1, math.MaxUint64)
		if err != nil {
			fmt.Fprintf(&b, "entries error: %v\n", err)
		} else {
			fmt.Fprintf(&b, "log %s\n", fmtEnts(ents))
		}
	}
	return b.String()
}
