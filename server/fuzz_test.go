package server

import (
	"bytes"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metastore/metastore/mvcc"
)

// Decoders of the records the server persists in the engine's meta column
// family are strict: whatever decodes re-encodes to the same bytes, and
// nothing panics. Seeds (here and in testdata/fuzz) run in plain `go test`.

func FuzzDecodeAlarmMetaKey(f *testing.F) {
	f.Add([]byte("alarm/8e9e05c52164694d/1"))
	f.Add([]byte("alarm/0000000000000001/2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := decodeAlarmMetaKey(b)
		if err != nil {
			return
		}
		if got := alarmMetaKey(k); !bytes.Equal(got, b) {
			t.Fatalf("decoded %q, re-encoded as %q", b, got)
		}
	})
}

func FuzzDecodeRemovedKey(f *testing.F) {
	f.Add(removedKey(0x8e9e05c52164694d))
	f.Add([]byte("removed/1"))
	f.Add([]byte("removed/+000000000000001"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := decodeRemovedKey(b)
		if err != nil {
			return
		}
		if got := removedKey(id); !bytes.Equal(got, b) {
			t.Fatalf("decoded %q, re-encoded as %q", b, got)
		}
	})
}

// FuzzDecodeMember: a member record that decodes is a member start-up can
// use (an ID and peer URLs), and survives its own encoding unchanged.
func FuzzDecodeMember(f *testing.F) {
	f.Add(encodeMember(&Member{ID: 0x8e9e05c52164694d, Name: "m1", PeerURLs: []string{"http://127.0.0.1:2380"}, ClientURLs: []string{"http://127.0.0.1:2379"}}))
	f.Add(encodeMember(&Member{ID: 1, PeerURLs: []string{"https://a:1", "https://b:2"}, IsLearner: true}))
	f.Add([]byte(`{"id":0,"peerURLs":["x"]}`))
	f.Add([]byte(`{"id":1,"peerURLs":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMember(b)
		if err != nil {
			return
		}
		if m.ID == 0 || len(m.PeerURLs) == 0 {
			t.Fatalf("decoded an unusable member %+v from %q", m, b)
		}
		again, err := decodeMember(encodeMember(m))
		if err != nil {
			t.Fatalf("re-encoded member %+v does not decode: %v", m, err)
		}
		if !bytes.Equal(encodeMember(again), encodeMember(m)) {
			t.Fatalf("member changed through its encoding: %+v -> %+v", m, again)
		}
	})
}

// FuzzRequestValidation runs the gRPC edge's validators (mvcc's, with this
// server's limits) on arbitrary Range, Put, DeleteRange and Txn bytes: they
// never panic, and every rejection reaches the client as one of etcd's
// errors (an "etcdserver: " status with a real code, never Unknown), since
// clients match on those.
func FuzzRequestValidation(f *testing.F) {
	seed := func(r interface{ Marshal() ([]byte, error) }) []byte {
		b, err := r.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), SortOrder: 9}))
	f.Add(seed(&pb.PutRequest{Key: []byte{}, Value: []byte("v")}))
	f.Add(seed(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true, Value: []byte("v")}))
	f.Add(seed(&pb.DeleteRangeRequest{Key: []byte{}}))
	f.Add(seed(&pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a")}}},
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a")}}},
	}}))
	f.Add(seed(&pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("k"), Target: 9}}, Success: []*pb.RequestOp{{}}}))
	maxTxnOps := DefaultConfig().MaxTxnOps
	check := func(t *testing.T, what string, err error) {
		if err == nil {
			return
		}
		st, ok := status.FromError(toGRPCError(err))
		if !ok || st.Code() == codes.Unknown || !strings.HasPrefix(st.Message(), "etcdserver: ") {
			t.Fatalf("%s rejected with %v, which is not one of etcd's errors", what, err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var rr pb.RangeRequest
		if rr.Unmarshal(b) == nil {
			check(t, "range", mvcc.ValidateRange(&rr))
		}
		var pr pb.PutRequest
		if pr.Unmarshal(b) == nil {
			check(t, "put", mvcc.ValidatePut(&pr))
		}
		var dr pb.DeleteRangeRequest
		if dr.Unmarshal(b) == nil {
			check(t, "delete", mvcc.ValidateDeleteRange(&dr))
		}
		var tr pb.TxnRequest
		if tr.Unmarshal(b) == nil {
			check(t, "txn", mvcc.ValidateTxn(&tr, maxTxnOps))
			isTxnReadOnly(&tr)
			txnHasPut(&tr)
		}
	})
}
