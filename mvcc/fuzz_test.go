package mvcc

import (
	"bytes"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Decoders are strict: whatever decodes re-encodes to the same bytes, and
// nothing panics. Seeds run in plain `go test`; `go test -fuzz FuzzX`
// explores.

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(&record{mod: Revision{Main: 5, Sub: 2}, create: 3, version: 2, lease: 7, value: []byte("v")}))
	f.Add(encodeRecord(&record{tombstone: true, mod: Revision{Main: 9}}))
	f.Add(encodeRecord(&record{mod: Revision{Main: 1 << 40}, create: 1, version: 1, lease: -1}))
	f.Add([]byte{0, 0x80, 0x00})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if got := encodeRecord(&r); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x as %x", b, got)
		}
	})
}

func FuzzDecodeHistoryKey(f *testing.F) {
	f.Add(appendHistoryKey(nil, []byte("a"), 3))
	f.Add(appendHistoryKey(nil, []byte("a\x00b\x00"), 1<<62))
	f.Add([]byte{0x61, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, rev, err := decodeHistoryKey(b)
		if err != nil {
			return
		}
		if got := appendHistoryKey(nil, k, rev); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x as %x", b, got)
		}
	})
}

func FuzzDecodeEvents(f *testing.F) {
	inline := encodeRecord(&record{mod: Revision{Main: 7, Sub: 0}, create: 7, version: 1, value: []byte("1")})
	f.Add(encodeEvents([]eventEntry{{key: []byte("a")}, {del: true, sub: 1, superseded: 3, key: []byte("b")}}), int64(7))
	f.Add(encodeEvents([]eventEntry{{key: []byte("q"), inline: inline}, {del: true, sub: 1, key: []byte("q")}}), int64(7))
	f.Add([]byte{1, 3, 0, 0, 1, 'a'}, int64(2))
	f.Fuzz(func(t *testing.T, b []byte, rev int64) {
		evs, err := decodeEvents(b, rev)
		if err != nil {
			return
		}
		if got := encodeEvents(evs); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x as %x", b, got)
		}
	})
}

func FuzzDecodeLease(f *testing.F) {
	f.Add(encodeLease(10, 3))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		ttl, rem, err := decodeLease(b)
		if err != nil {
			return
		}
		if got := encodeLease(ttl, rem); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x as %x", b, got)
		}
	})
}

// FuzzValidate feeds arbitrary protobuf bytes to the request validators:
// they must not panic, and a txn they accept must apply without breaking
// the store.
func FuzzValidate(f *testing.F) {
	seed := func(r interface{ Marshal() ([]byte, error) }) []byte {
		b, err := r.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed(&pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a")}}},
		{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("b")}}},
	}}))
	f.Add(seed(&pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("k")}}, Failure: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a")}}}}}}},
		{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), SortOrder: 7}}},
	}}))
	db := openEngine(f, f.TempDir())
	s := openStore(f, db, testCfg())
	f.Cleanup(func() {
		s.Close()
		db.Close()
	})
	index := uint64(0)
	f.Fuzz(func(t *testing.T, b []byte) {
		var r pb.TxnRequest
		if err := r.Unmarshal(b); err != nil {
			return
		}
		_ = ValidateTxn(&r, 128)
		var rr pb.RangeRequest
		if rr.Unmarshal(b) == nil {
			_ = ValidateRange(&rr)
		}
		var pr pb.PutRequest
		if pr.Unmarshal(b) == nil {
			_ = ValidatePut(&pr)
		}
		index++
		if _, err := s.Txn(index, &r); err == nil {
			if _, err := s.Range(t.Context(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}); err != nil {
				t.Fatal(err)
			}
		}
	})
}
