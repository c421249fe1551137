package mvcc

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
)

// The crash test runs a child process (this test binary, re-executed with
// crashDirEnv set) that applies random writes, txns, lease operations and
// compactions it does not wait for, printing each operation before it
// applies it and an ack after. The parent SIGKILLs it at a random moment,
// reopens the store, applies to the model every printed operation up to
// the store's applied index (every one acked before the child's last
// SyncWAL must be there; later ones may be lost with the WAL buffer, as the
// server's raft log replays them), and compares: ranges at several revisions,
// the event feed and HashKV. It then waits for the interrupted compaction
// to resume and finish and checks that no version it should have removed
// remains.

const (
	crashDirEnv  = "MVCC_CRASH_DIR"
	crashSeedEnv = "MVCC_CRASH_SEED"
	crashKills   = 6
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		seed, _ := strconv.ParseInt(os.Getenv(crashSeedEnv), 10, 64)
		crashChild(dir, seed)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func crashCfg() Config {
	return Config{CompactionBatchLimitRevs: 2, CompactionBatchInterval: time.Millisecond, CompactionBusyPercent: 100, MaxLeases: 3, CountIndexBucketKeys: 2}
}

// crashChild applies random operations until killed.
func crashChild(dir string, seed int64) {
	db, err := engine.Open(dir, testOptions())
	if err != nil {
		panic(err)
	}
	s, err := Open(db, crashCfg(), zap.NewNop())
	if err != nil {
		panic(err)
	}
	rnd := rand.New(rand.NewSource(seed))
	g := &gen{rnd: rnd, rev: s.Rev, compac: s.CompactedRev}
	out := bufio.NewWriter(os.Stdout)
	index := s.AppliedIndex()
	emit := func(kind string, msg proto.Message, extra string) {
		var b []byte
		if msg != nil {
			b, _ = proto.Marshal(msg)
		}
		fmt.Fprintf(out, "op %d %s %s %s\n", index, kind, "="+base64.StdEncoding.EncodeToString(b), extra)
		out.Flush()
	}
	inGroup := false
	for i := 0; i < 1_000_000; i++ {
		index++
		// Group commits at random, as the server applies a Ready's
		// entries: a kill loses a pending group whole.
		if rnd.Intn(4) == 0 {
			if inGroup {
				if err := s.EndGroup(); err != nil {
					panic(err)
				}
			} else {
				s.BeginGroup()
			}
			inGroup = !inGroup
		}
		switch x := rnd.Intn(100); {
		case x < 40:
			p := g.put()
			emit("put", p, "")
			_, _ = s.Put(index, p)
		case x < 50:
			d := g.del()
			emit("del", d, "")
			_, _ = s.DeleteRange(index, d)
		case x < 80:
			r := g.txn(0)
			emit("txn", r, "")
			_, _ = s.Txn(index, r)
		case x < 86:
			rev := s.CompactedRev() + 1 + rnd.Int63n(max(s.Rev()-s.CompactedRev(), 1))
			emit("compact", nil, strconv.FormatInt(rev, 10))
			_, _ = s.Compact(index, rev)
		case x < 92:
			id, ttl := g.lease(), int64(rnd.Intn(100))
			emit("grant", nil, fmt.Sprintf("%d,%d", id, ttl))
			_ = s.LeaseGrant(index, id, ttl)
		case x < 96:
			id := g.lease()
			emit("revoke", nil, strconv.FormatInt(id, 10))
			_, _ = s.LeaseRevoke(index, id)
		default:
			id, rem := g.lease(), int64(rnd.Intn(10))
			emit("checkpoint", nil, fmt.Sprintf("%d,%d", id, rem))
			_ = s.LeaseCheckpoint(index, id, rem)
		}
		fmt.Fprintf(out, "ack %d\n", index)
		// Unsynced writes may sit in the WAL buffer (ManualWALFlush) and
		// die with the process, as in the server, where the raft log
		// replays them; SyncWAL (the server's, before truncating that log)
		// makes everything acked so far durable.
		if rnd.Intn(8) == 0 {
			if inGroup {
				if err := s.EndGroup(); err != nil {
					panic(err)
				}
				inGroup = false
			}
			if err := db.SyncWAL(); err != nil {
				panic(err)
			}
			fmt.Fprintf(out, "durable %d\n", index)
		}
		out.Flush()
	}
}

type crashOp struct {
	index uint64
	kind  string
	msg   []byte
	extra string
}

func (o *crashOp) apply(t *testing.T, m *model, maxLeases int) {
	switch o.kind {
	case "put":
		var p pb.PutRequest
		mustUnmarshal(t, o.msg, &p)
		_, _ = m.Put(o.index, &p)
	case "del":
		var d pb.DeleteRangeRequest
		mustUnmarshal(t, o.msg, &d)
		_, _ = m.DeleteRange(o.index, &d)
	case "txn":
		var r pb.TxnRequest
		mustUnmarshal(t, o.msg, &r)
		_, _ = m.Txn(o.index, &r)
	case "compact":
		rev, _ := strconv.ParseInt(o.extra, 10, 64)
		_ = m.Compact(o.index, rev)
	case "grant", "checkpoint":
		a, b, _ := strings.Cut(o.extra, ",")
		id, _ := strconv.ParseInt(a, 10, 64)
		n, _ := strconv.ParseInt(b, 10, 64)
		if o.kind == "grant" {
			_ = m.LeaseGrant(o.index, id, n, maxLeases)
		} else {
			_ = m.LeaseCheckpoint(o.index, id, n)
		}
	case "revoke":
		id, _ := strconv.ParseInt(o.extra, 10, 64)
		_, _ = m.LeaseRevoke(o.index, id)
	default:
		t.Fatalf("unknown op %q", o.kind)
	}
}

func mustUnmarshal(t *testing.T, b []byte, m proto.Message) {
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
}

func TestCrash(t *testing.T) {
	seed := testSeed(t)
	rnd := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	m := newModel()
	var pending []crashOp // printed, not yet known applied
	for kill := 0; kill < crashKills; kill++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s=%d", crashSeedEnv, seed+int64(kill)))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(50+rnd.Intn(250)) * time.Millisecond
		timer := time.AfterFunc(delay, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		var acked, durable uint64
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			idx, _ := strconv.ParseUint(f[1], 10, 64)
			switch f[0] {
			case "op":
				msg, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(f[3], "="))
				if err != nil {
					t.Fatal(err)
				}
				extra := ""
				if len(f) > 4 {
					extra = f[4]
				}
				pending = append(pending, crashOp{index: idx, kind: f[2], msg: msg, extra: extra})
			case "ack":
				acked = idx
			case "durable":
				durable = idx
			}
		}
		_ = cmd.Wait()
		timer.Stop()

		db := openEngine(t, dir)
		s := openStore(t, db, crashCfg())
		applied := s.AppliedIndex()
		for len(pending) > 0 && pending[0].index <= applied {
			pending[0].apply(t, m, crashCfg().MaxLeases)
			pending = pending[1:]
		}
		// Durable entries above the persisted applied index are the ones
		// that changed nothing (their index is persisted lazily): raft
		// replays them on the same state. Check that they change nothing.
		// Acked entries past the last SyncWAL may be lost: the server's
		// raft log replays them.
		for len(pending) > 0 && pending[0].index <= durable {
			before := fmt.Sprint(m.rev, m.compacted, m.leases)
			pending[0].apply(t, m, crashCfg().MaxLeases)
			if after := fmt.Sprint(m.rev, m.compacted, m.leases); after != before {
				t.Fatalf("seed %d kill %d: acked entry %d (%s) is lost: model %s -> %s",
					seed, kill, pending[0].index, pending[0].kind, before, after)
			}
			pending = pending[1:]
		}
		pending = nil // ops in flight were lost with the process
		m.applied = applied
		t.Logf("kill %d after %s: acked %d durable %d applied %d rev %d compacted %d", kill, delay, acked, durable, applied, s.Rev(), s.CompactedRev())
		compareWithModel(t, seed, s, m, rnd)

		// The interrupted compaction resumes on Open and finishes.
		deadline := time.Now().Add(30 * time.Second)
		for s.comp.finished() != s.CompactedRev() {
			if time.Now().After(deadline) {
				t.Fatalf("compaction to %d did not resume (finished %d)", s.CompactedRev(), s.comp.finished())
			}
			time.Sleep(5 * time.Millisecond)
		}
		checkCompacted(t, db, s.CompactedRev())
		compareWithModel(t, seed, s, m, rnd)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// compareWithModel checks the store's visible state against the model's.
func compareWithModel(t *testing.T, seed int64, s *Store, m *model, rnd *rand.Rand) {
	t.Helper()
	if s.Rev() != m.rev || s.CompactedRev() != m.compacted {
		t.Fatalf("seed %d: store rev %d compacted %d, model %d %d", seed, s.Rev(), s.CompactedRev(), m.rev, m.compacted)
	}
	revs := []int64{0, max(m.compacted, 1), m.rev}
	for i := 0; i < 10; i++ {
		lo := max(m.compacted, 1)
		revs = append(revs, lo+rnd.Int63n(m.rev-lo+1))
	}
	for _, rev := range revs {
		r := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
		r1, e1 := s.Range(context.Background(), r)
		r2, e2 := m.Range(r)
		if a, b := result(r1, e1), result(r2, e2); a != b {
			t.Fatalf("seed %d: range at %d:\nstore:\n%s\nmodel:\n%s", seed, rev, a, b)
		}
	}
	from := max(m.compacted, 1)
	e1, n1, err1 := s.Events(from, 0, nil, nil, 0)
	e2, n2, err2 := m.Events(from, 0, nil, nil, 0)
	if a, b := fmtEvents(e1, n1, err1), fmtEvents(e2, n2, err2); a != b {
		t.Fatalf("seed %d: events from %d:\nstore:\n%s\nmodel:\n%s", seed, from, a, b)
	}
	m.hashes = nil // the store lost its compaction hashes with the process
	h1, c1, err1 := s.HashKV(0)
	h2, c2, err2 := m.HashKV(0)
	if fmt.Sprint(h1, c1, err1) != fmt.Sprint(h2, c2, err2) {
		t.Fatalf("seed %d: hash: store %d %d %v model %d %d %v", seed, h1, c1, err1, h2, c2, err2)
	}
	var b1, b2 strings.Builder
	for _, l := range s.Leases() {
		keys, _ := s.LeaseKeys(l.ID)
		fmt.Fprintf(&b1, "%v %q\n", l, keys)
	}
	for _, id := range sortedLeaseIDs(m.leases) {
		fmt.Fprintf(&b2, "%v %q\n", m.leases[id], m.leaseKeys(id))
	}
	if b1.String() != b2.String() {
		t.Fatalf("seed %d: leases:\nstore:\n%s\nmodel:\n%s", seed, b1.String(), b2.String())
	}
}

// checkCompacted verifies that a finished compaction at c left exactly
// what it must: no event list below c, no version that is not the newest
// <= some revision >= c, no tombstone below c.
func checkCompacted(t *testing.T, db *engine.DB, c int64) {
	t.Helper()
	type ver struct {
		main int64
		tomb bool
	}
	versions := map[string][]ver{}
	it, err := db.NewIterator(engine.CFHistory, engine.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		k, main, err := decodeHistoryKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		rec, err := decodeRecord(it.Value())
		if err != nil {
			t.Fatal(err)
		}
		versions[string(k)] = append(versions[string(k)], ver{main, rec.tombstone})
	}
	it.Close()
	it, err = db.NewIterator(engine.CFKV, engine.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		rec, err := decodeRecord(it.Value())
		if err != nil {
			t.Fatal(err)
		}
		k := string(it.Key())
		// history is newest first; put the latest in front.
		versions[k] = append([]ver{{rec.mod.Main, rec.tombstone}}, versions[k]...)
	}
	it.Close()
	for k, vs := range versions {
		for i, v := range vs {
			if v.tomb && v.main < c {
				t.Fatalf("key %q: tombstone at %d below compaction %d remains", k, v.main, c)
			}
			if i > 0 && vs[i-1].main <= c {
				t.Fatalf("key %q: version %d superseded at %d <= compaction %d remains", k, v.main, vs[i-1].main, c)
			}
		}
	}
	it, err = db.NewIterator(engine.CFEvents, engine.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if it.First() {
		if rev, _ := decodeEventKey(it.Key()); rev < c {
			t.Fatalf("event list %d below compaction %d remains", rev, c)
		}
	}
}
