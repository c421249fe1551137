package mvcc

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

var (
	seedFlag  = flag.Int64("seed", 0, "seed of TestRandomAgainstModel and TestCrash (0: time-based)")
	randomOps = flag.Int("random-ops", 3000, "operations of TestRandomAgainstModel")
)

func testSeed(t *testing.T) int64 {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	return seed
}

// gen makes random requests over a small key space, so keys collide,
// generations end and restart, and txns conflict.
type gen struct {
	rnd    *rand.Rand
	rev    func() int64
	compac func() int64
}

var genKeys = []string{"a", "a\x00", "ab", "b", "c", "d", "e", "f"}

func (g *gen) key() []byte { return []byte(genKeys[g.rnd.Intn(len(genKeys))]) }

func (g *gen) end(key []byte) []byte {
	switch g.rnd.Intn(6) {
	case 0, 1:
		return nil
	case 2:
		return []byte{0}
	default:
		e := g.key()
		return e
	}
}

func (g *gen) value() []byte {
	if g.rnd.Intn(8) == 0 {
		return nil
	}
	return []byte(fmt.Sprintf("v%d", g.rnd.Intn(5)))
}

func (g *gen) lease() int64 {
	if g.rnd.Intn(3) == 0 {
		return int64(1 + g.rnd.Intn(4))
	}
	return 0
}

// anyRev returns a revision around the interesting ones.
func (g *gen) anyRev() int64 {
	switch g.rnd.Intn(5) {
	case 0:
		return 0
	case 1:
		return g.compac() + int64(g.rnd.Intn(3)) - 1
	case 2:
		return g.rev() + int64(g.rnd.Intn(3))
	default:
		lo := max(g.compac(), 1)
		return lo + g.rnd.Int63n(g.rev()-lo+1)
	}
}

func (g *gen) put() *pb.PutRequest {
	p := &pb.PutRequest{Key: g.key(), Value: g.value(), Lease: g.lease(), PrevKv: g.rnd.Intn(2) == 0}
	if g.rnd.Intn(8) == 0 {
		p.IgnoreValue, p.Value = true, nil
	}
	if g.rnd.Intn(8) == 0 {
		p.IgnoreLease, p.Lease = true, 0
	}
	return p
}

func (g *gen) del() *pb.DeleteRangeRequest {
	k := g.key()
	return &pb.DeleteRangeRequest{Key: k, RangeEnd: g.end(k), PrevKv: g.rnd.Intn(2) == 0}
}

func (g *gen) rangeReq() *pb.RangeRequest {
	k := g.key()
	r := &pb.RangeRequest{Key: k, RangeEnd: g.end(k)}
	if g.rnd.Intn(3) == 0 {
		r.Revision = g.anyRev()
	}
	if g.rnd.Intn(3) == 0 {
		r.Limit = int64(g.rnd.Intn(4))
	}
	if g.rnd.Intn(3) == 0 {
		r.SortTarget = pb.RangeRequest_SortTarget(g.rnd.Intn(5))
		r.SortOrder = pb.RangeRequest_SortOrder(g.rnd.Intn(3))
	}
	r.KeysOnly = g.rnd.Intn(6) == 0
	r.CountOnly = g.rnd.Intn(6) == 0
	if g.rnd.Intn(5) == 0 {
		r.MinModRevision = g.anyRev()
	}
	if g.rnd.Intn(5) == 0 {
		r.MaxCreateRevision = g.anyRev()
	}
	return r
}

func (g *gen) compare() *pb.Compare {
	k := g.key()
	c := &pb.Compare{Key: k, Result: pb.Compare_CompareResult(g.rnd.Intn(4))}
	if g.rnd.Intn(4) == 0 {
		c.RangeEnd = g.end(k)
	}
	switch g.rnd.Intn(5) {
	case 0:
		c.Target, c.TargetUnion = pb.Compare_VALUE, &pb.Compare_Value{Value: g.value()}
	case 1:
		c.Target, c.TargetUnion = pb.Compare_VERSION, &pb.Compare_Version{Version: int64(g.rnd.Intn(4))}
	case 2:
		c.Target, c.TargetUnion = pb.Compare_CREATE, &pb.Compare_CreateRevision{CreateRevision: g.anyRev()}
	case 3:
		c.Target, c.TargetUnion = pb.Compare_MOD, &pb.Compare_ModRevision{ModRevision: g.anyRev()}
	default:
		c.Target, c.TargetUnion = pb.Compare_LEASE, &pb.Compare_Lease{Lease: g.lease()}
	}
	return c
}

func (g *gen) ops(depth int) []*pb.RequestOp {
	n := g.rnd.Intn(4)
	ops := make([]*pb.RequestOp, n)
	for i := range ops {
		switch x := g.rnd.Intn(10); {
		case x < 3:
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.put()}}
		case x < 5:
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.del()}}
		case x < 8 || depth >= 2:
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq()}}
		default:
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txn(depth + 1)}}
		}
	}
	return ops
}

func (g *gen) txn(depth int) *pb.TxnRequest {
	r := &pb.TxnRequest{}
	for i := g.rnd.Intn(3); i > 0; i-- {
		r.Compare = append(r.Compare, g.compare())
	}
	r.Success = g.ops(depth)
	r.Failure = g.ops(depth)
	return r
}

// result formats a response or error for comparison.
func result(resp any, err error) string {
	if err != nil {
		return fmtErr(err)
	}
	return fmtResp(resp, 0)
}

func fmtEvents(evs []mvccpb.Event, next int64, err error) string {
	if err != nil {
		return fmtErr(err)
	}
	var b strings.Builder
	for i := range evs {
		b.WriteString(fmtEvent(&evs[i]) + "\n")
	}
	fmt.Fprintf(&b, "next=%d", next)
	return b.String()
}

func TestRandomAgainstModel(t *testing.T) {
	seed := testSeed(t)
	rnd := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	cfg := testCfg()
	cfg.MaxLeases = 3
	db := openEngine(t, dir)
	s := openStore(t, db, cfg)
	defer func() {
		s.Close()
		db.Close()
	}()
	m := newModel()
	g := &gen{rnd: rnd, rev: func() int64 { return m.rev }, compac: func() int64 { return m.compacted }}
	index := uint64(0)
	ctx := context.Background()
	var history []string
	check := func(op, got, want string) {
		history = append(history, op)
		if got != want {
			if len(history) > 20 {
				history = history[len(history)-20:]
			}
			t.Fatalf("seed %d: op %d %s:\nstore:\n%s\nmodel:\n%s\nlast ops:\n%s", seed, len(history), op, got, want,
				strings.Join(history, "\n"))
		}
	}
	// Writes run inside group commits at random, as the server applies a
	// Ready's entries (group.go); reads, as the server's, see the state
	// once the group is written, so one ends the group first.
	inGroup := false
	endGroup := func() {
		if inGroup {
			if err := s.EndGroup(); err != nil {
				t.Fatal(err)
			}
			inGroup = false
		}
	}
	for i := 0; i < *randomOps; i++ {
		index++
		if rnd.Intn(50) == 0 {
			index -= uint64(1 + rnd.Intn(3)) // a replayed entry
		}
		if rnd.Intn(4) == 0 {
			if inGroup {
				endGroup()
			} else {
				s.BeginGroup()
				inGroup = true
			}
		}
		x := rnd.Intn(100)
		if isRead := (x >= 35 && x < 55) || (x >= 88 && x < 98); isRead {
			endGroup()
		}
		switch {
		case x < 25:
			p := g.put()
			r1, e1 := s.Put(index, p)
			r2, e2 := m.Put(index, p)
			check(fmt.Sprintf("put %v", p), result(r1, e1), result(r2, e2))
		case x < 35:
			d := g.del()
			r1, e1 := s.DeleteRange(index, d)
			r2, e2 := m.DeleteRange(index, d)
			check(fmt.Sprintf("del %v", d), result(r1, e1), result(r2, e2))
		case x < 55:
			r := g.rangeReq()
			r1, e1 := s.Range(ctx, r)
			r2, e2 := m.Range(r)
			check(fmt.Sprintf("range %v", r), result(r1, e1), result(r2, e2))
			index-- // reads take no raft index
		case x < 75:
			r := g.txn(0)
			r1, e1 := s.Txn(index, r)
			r2, e2 := m.Txn(index, r)
			check(fmt.Sprintf("txn %v", r), result(r1, e1), result(r2, e2))
		case x < 79:
			rev := g.anyRev()
			done, e1 := s.Compact(index, rev)
			e2 := m.Compact(index, rev)
			if e1 == nil {
				<-done
			}
			check(fmt.Sprintf("compact %d", rev), result(nil, e1), result(nil, e2))
		case x < 83:
			id, ttl := g.lease(), int64(rnd.Intn(100))
			check(fmt.Sprintf("lease-grant %d", id), result(nil, s.LeaseGrant(index, id, ttl)),
				result(nil, m.LeaseGrant(index, id, ttl, cfg.MaxLeases)))
		case x < 86:
			id := g.lease()
			r1, e1 := s.LeaseRevoke(index, id)
			r2, e2 := m.LeaseRevoke(index, id)
			check(fmt.Sprintf("lease-revoke %d", id), fmt.Sprint(r1, e1), fmt.Sprint(r2, e2))
		case x < 88:
			id, rem := g.lease(), int64(rnd.Intn(10))
			check("lease-checkpoint", result(nil, s.LeaseCheckpoint(index, id, rem)),
				result(nil, m.LeaseCheckpoint(index, id, rem)))
		case x < 93:
			from := max(g.anyRev(), 1)
			to := int64(0)
			if rnd.Intn(2) == 0 {
				to = g.anyRev()
			}
			k := g.key()
			var end []byte
			if rnd.Intn(2) == 0 {
				k, end = nil, nil
			} else {
				end = g.end(k)
			}
			maxEv := rnd.Intn(5)
			e1, n1, err1 := s.Events(from, to, k, end, maxEv)
			e2, n2, err2 := m.Events(from, to, k, end, maxEv)
			check(fmt.Sprintf("events %d %d %q %q %d", from, to, k, end, maxEv), fmtEvents(e1, n1, err1), fmtEvents(e2, n2, err2))
			index--
		case x < 96:
			rev := g.anyRev()
			h1, c1, e1 := s.HashKV(rev)
			h2, c2, e2 := m.HashKV(rev)
			check(fmt.Sprintf("hash %d", rev), fmt.Sprint(h1, c1, e1), fmt.Sprint(h2, c2, e2))
			index--
		case x < 98:
			// Leases as the store sees them.
			var b1, b2 strings.Builder
			for _, l := range s.Leases() {
				keys, _ := s.LeaseKeys(l.ID)
				fmt.Fprintf(&b1, "%v %q\n", l, keys)
			}
			for _, id := range sortedLeaseIDs(m.leases) {
				fmt.Fprintf(&b2, "%v %q\n", m.leases[id], m.leaseKeys(id))
			}
			check("leases", b1.String(), b2.String())
			index--
		default:
			endGroup()
			checkCountIndex(t, s)
			checkLatestCache(t, s)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = openEngine(t, dir)
			s = openStore(t, db, cfg)
			m.hashes = nil // etcd keeps compaction hashes in memory only
			check("reopen", fmt.Sprint(s.Rev(), s.CompactedRev(), s.AppliedIndex()),
				fmt.Sprint(m.rev, m.compacted, m.applied))
			index--
		}
		if index < m.applied {
			index = m.applied
		}
	}
	endGroup()
	checkCountIndex(t, s)
	checkLatestCache(t, s)
	t.Logf("%d ops, final revision %d, compacted %d", *randomOps, m.rev, m.compacted)
}

func sortedLeaseIDs(m map[int64]Lease) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	for i := range ids {
		for j := i + 1; j < len(ids); j++ {
			if ids[j] < ids[i] {
				ids[i], ids[j] = ids[j], ids[i]
			}
		}
	}
	return ids
}
