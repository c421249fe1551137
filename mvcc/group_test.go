package mvcc

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestGroupCommit: grouped writes see each other, stay invisible to
// readers until EndGroup, a failed txn in the middle leaves no trace, and
// a subscription made mid-group gets exactly the revisions after it.
func TestGroupCommit(t *testing.T) {
	db := openEngine(t, t.TempDir())
	s := openStore(t, db, testCfg())
	defer func() { s.Close(); db.Close() }()
	ctx := context.Background()

	s.BeginGroup()
	if _, err := s.Put(1, &pb.PutRequest{Key: []byte("a"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Put(2, &pb.PutRequest{Key: []byte("a"), Value: []byte("2"), PrevKv: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.PrevKv == nil || string(resp.PrevKv.Value) != "1" || resp.Header.Revision != 3 {
		t.Fatalf("second put in the group: %v", resp)
	}
	// Fails (no such key) after the group's writes: only its own part goes.
	if _, err := s.Put(3, &pb.PutRequest{Key: []byte("missing"), IgnoreValue: true}); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("ignore_value on a missing key: %v", err)
	}
	if got := s.Rev(); got != 1 {
		t.Fatalf("revision visible before EndGroup = %d, want 1", got)
	}
	r, err := s.Range(ctx, &pb.RangeRequest{Key: []byte("a")})
	if err != nil || len(r.Kvs) != 0 {
		t.Fatalf("a pending write is visible before EndGroup: %v %v", r, err)
	}
	sub := s.Subscribe() // writes the pending group out
	defer sub.Close()
	if got := s.Rev(); got != 3 {
		t.Fatalf("revision after a mid-group Subscribe = %d, want 3", got)
	}
	txn := &pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: 3}}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("b"), Value: []byte("x")}}}},
	}
	tr, err := s.Txn(4, txn)
	if err != nil || !tr.Succeeded {
		t.Fatalf("txn comparing a's mod revision in the group: %v %v", tr, err)
	}
	if err := s.EndGroup(); err != nil {
		t.Fatal(err)
	}
	if s.Rev() != 4 || s.AppliedIndex() != 4 {
		t.Fatalf("after EndGroup: rev %d applied %d, want 4 and 4", s.Rev(), s.AppliedIndex())
	}
	select {
	case evs := <-sub.C():
		if len(evs) != 1 || string(evs[0].Kv.Key) != "b" || evs[0].Kv.ModRevision != 4 {
			t.Fatalf("subscription got %v, want b@4 only", evs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event for the revision after the subscription")
	}

	// The group reached the engine with its applied index.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, db, testCfg())
	if s.Rev() != 4 || s.AppliedIndex() != 4 {
		t.Fatalf("reopened: rev %d applied %d, want 4 and 4", s.Rev(), s.AppliedIndex())
	}
	r, err = s.Range(ctx, &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c")})
	if err != nil || len(r.Kvs) != 2 || string(r.Kvs[0].Value) != "2" || r.Kvs[0].Version != 2 {
		t.Fatalf("reopened range: %v %v", r, err)
	}
}

// TestGroupable: what may join a group is what reads single keys at the
// current revision.
func TestGroupable(t *testing.T) {
	rng := func(end string, rev int64) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte(end), Revision: rev}}}
	}
	del := func(end string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k"), RangeEnd: []byte(end)}}}
	}
	nested := func(ops ...*pb.RequestOp) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: ops}}}
	}
	for _, tc := range []struct {
		name string
		txn  *pb.TxnRequest
		want bool
	}{
		{"empty", &pb.TxnRequest{}, true},
		{"single-key ops", &pb.TxnRequest{Success: []*pb.RequestOp{rng("", 0), del("")}}, true},
		{"range", &pb.TxnRequest{Success: []*pb.RequestOp{rng("z", 0)}}, false},
		{"old revision", &pb.TxnRequest{Failure: []*pb.RequestOp{rng("", 3)}}, false},
		{"delete range", &pb.TxnRequest{Success: []*pb.RequestOp{del("z")}}, false},
		{"nested range", &pb.TxnRequest{Success: []*pb.RequestOp{nested(rng("z", 0))}}, false},
		{"nested single", &pb.TxnRequest{Success: []*pb.RequestOp{nested(rng("", 0))}}, true},
		{"range compare", &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("k"), RangeEnd: []byte("z")}}}, false},
	} {
		if got := groupableTxn(tc.txn); got != tc.want {
			t.Errorf("%s: groupable %t, want %t", tc.name, got, tc.want)
		}
	}
}
