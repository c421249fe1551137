package mvcc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/engine/ddtest"
)

// ddEnv is one data-driven script's store. Apply commands take the next
// raft index unless given index=N.
type ddEnv struct {
	t     *testing.T
	dir   string
	db    *engine.DB
	s     *Store
	index uint64
	sub   *Subscription
	cfg   Config
}

func (e *ddEnv) open() {
	e.db = openEngine(e.t, e.dir)
	e.s = openStore(e.t, e.db, e.cfg)
	e.index = e.s.AppliedIndex()
}

func (e *ddEnv) close() {
	if e.sub != nil {
		e.sub.Close()
		e.sub = nil
	}
	if err := e.s.Close(); err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.Close(); err != nil {
		e.t.Fatal(err)
	}
}

func (e *ddEnv) nextIndex(a args) uint64 {
	if a.has("index") {
		return uint64(a.int("index"))
	}
	e.index++
	return e.index
}

func TestDataDriven(t *testing.T) {
	ddtest.Scripts(t, func(t *testing.T, path string) {
		cfg := testCfg()
		cfg.SubscriberBufferEvents = 3
		cfg.MaxLeases = 3
		e := &ddEnv{t: t, dir: t.TempDir(), cfg: cfg}
		e.open()
		defer func() { e.close() }()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			a := args{}
			for _, ca := range d.CmdArgs {
				a[ca.Key] = strings.Join(ca.Vals, ",")
			}
			return e.run(t, d.Cmd, a, d.Input)
		})
	})
}

func (e *ddEnv) run(t *testing.T, cmd string, a args, input string) string {
	ctx := context.Background()
	s := e.s
	switch cmd {
	case "put":
		resp, err := s.Put(e.nextIndex(a), putReq(a))
		if err != nil {
			return fmtErr(err)
		}
		return fmtResp(resp, 0)
	case "del":
		resp, err := s.DeleteRange(e.nextIndex(a), delReq(a))
		if err != nil {
			return fmtErr(err)
		}
		return fmtResp(resp, 0)
	case "get", "range":
		resp, err := s.Range(ctx, rangeReq(a))
		if err != nil {
			return fmtErr(err)
		}
		return fmtResp(resp, 0)
	case "txn":
		r, _ := parseTxn(strings.Split(input, "\n"))
		if a.has("validate") {
			if err := ValidateTxn(r, int(a.int("validate"))); err != nil {
				return fmtErr(err)
			}
			return "ok"
		}
		resp, err := s.Txn(e.nextIndex(a), r)
		if err != nil {
			return fmtErr(err)
		}
		return fmtResp(resp, 0)
	case "compact":
		done, err := s.Compact(e.nextIndex(a), a.int("rev"))
		if err != nil {
			return fmtErr(err)
		}
		if a.has("wait") {
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("compaction did not finish")
			}
		}
		return fmt.Sprintf("compacted=%d", s.CompactedRev())
	case "events":
		evs, next, err := s.Events(a.int("from"), a.int("to"), a.bytes("k"), a.bytes("end"), int(a.int("max")))
		if err != nil {
			return fmtErr(err)
		}
		var b strings.Builder
		for i := range evs {
			fmt.Fprintf(&b, "%s\n", fmtEvent(&evs[i]))
		}
		fmt.Fprintf(&b, "next=%d\n", next)
		return b.String()
	case "subscribe":
		e.sub = s.Subscribe()
		return "ok"
	case "sub-read":
		// Reads n revisions from the subscription.
		var b strings.Builder
		for i := int64(0); i < a.int("n"); i++ {
			select {
			case evs := <-e.sub.C():
				for j := range evs {
					fmt.Fprintf(&b, "%s\n", fmtEvent(&evs[j]))
				}
				b.WriteString("--\n")
			case <-time.After(10 * time.Second):
				t.Fatal("no events")
			}
		}
		if from, lag := e.sub.Lagging(); lag {
			fmt.Fprintf(&b, "lagging from %d\n", from)
		}
		return b.String()
	case "sub-resume":
		return fmt.Sprintf("resumed=%t", e.sub.Resume(a.int("rev")))
	case "lease-grant":
		if err := s.LeaseGrant(e.nextIndex(a), a.int("id"), a.int("ttl")); err != nil {
			return fmtErr(err)
		}
		return "ok"
	case "lease-revoke":
		rev, err := s.LeaseRevoke(e.nextIndex(a), a.int("id"))
		if err != nil {
			return fmtErr(err)
		}
		return fmt.Sprintf("rev=%d", rev)
	case "lease-checkpoint":
		if err := s.LeaseCheckpoint(e.nextIndex(a), a.int("id"), a.int("remaining")); err != nil {
			return fmtErr(err)
		}
		return "ok"
	case "leases":
		var b strings.Builder
		for _, l := range s.Leases() {
			keys, err := s.LeaseKeys(l.ID)
			if err != nil {
				return fmtErr(err)
			}
			fmt.Fprintf(&b, "lease %d ttl=%d remaining=%d keys=%q\n", l.ID, l.TTL, l.RemainingTTL, keys)
		}
		return b.String()
	case "hash":
		h, c, err := s.HashKV(a.int("rev"))
		if err != nil {
			return fmtErr(err)
		}
		return fmt.Sprintf("hash=%08x compact=%d", h, c)
	case "reopen":
		e.close()
		e.open()
		return fmt.Sprintf("rev=%d compacted=%d applied=%d", e.s.Rev(), e.s.CompactedRev(), e.s.AppliedIndex())
	case "state":
		return dumpState(t, e.db)
	case "rev":
		return fmt.Sprintf("rev=%d compacted=%d applied=%d", s.Rev(), s.CompactedRev(), s.AppliedIndex())
	case "meta":
		err := s.ApplyMeta(e.nextIndex(a), func(b *engine.Batch) error {
			if a.has("fail") {
				return fmt.Errorf("fn failed")
			}
			b.Put(engine.CFMeta, []byte("auth/"+a["k"]), []byte(a["v"]))
			return nil
		})
		if err != nil {
			return fmtErr(err)
		}
		return "ok"
	default:
		t.Fatalf("unknown command %q", cmd)
		return ""
	}
}
