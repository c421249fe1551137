package mvcc

import (
	"bytes"
	"context"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
)

// Fuzz targets for the store's remaining persisted records (event keys,
// lease keys, the meta values: applied index, current revision, compaction
// progress) and for Range/Put/DeleteRange validation followed by apply.
// FuzzDecodeRecord and its kin are in fuzz_test.go.

func FuzzDecodeKeys(f *testing.F) {
	f.Add(eventKey(7), leaseKey(3), encodeU64(9))
	f.Add(eventKey(-1), leaseKey(-5), []byte{1, 2, 3})
	f.Add([]byte{0, 0, 0}, attachKey(1, []byte("k")), []byte{})
	f.Fuzz(func(t *testing.T, ek, lk, u []byte) {
		if rev, err := decodeEventKey(ek); err == nil && !bytes.Equal(eventKey(rev), ek) {
			t.Fatalf("event key %x decoded as %d, re-encoded as %x", ek, rev, eventKey(rev))
		}
		if id, err := decodeLeaseKey(lk); err == nil && !bytes.Equal(leaseKey(id), lk) {
			t.Fatalf("lease key %x decoded as %d, re-encoded as %x", lk, id, leaseKey(id))
		}
		if v, err := decodeU64(u); err == nil && !bytes.Equal(encodeU64(v), u) {
			t.Fatalf("meta value %x decoded as %d, re-encoded as %x", u, v, encodeU64(v))
		}
	})
}

// metaKeys are the meta records FuzzOpenMeta replaces, in its argument order.
var metaKeys = [][]byte{metaAppliedIndex, metaCurrentRev, metaCompactScheduled, metaCompactFinished, metaCompactCursor}

// FuzzOpenMeta opens a store with a real history (revisions 2-9, compacted
// at 4) whose meta records are replaced by fuzzed values (present when
// their bit is set in mask): Open fails with ErrCorrupt, or yields a store
// with a sane state that serves a read and takes a write.
func FuzzOpenMeta(f *testing.F) {
	db := openEngine(f, f.TempDir())
	f.Cleanup(func() { db.Close() })
	s := openStore(f, db, testCfg())
	for i := uint64(1); i <= 8; i++ {
		if _, err := s.Put(i, &pb.PutRequest{Key: []byte{'a' + byte(i%3)}, Value: []byte{byte(i)}}); err != nil {
			f.Fatal(err)
		}
	}
	done, err := s.Compact(9, 4)
	if err != nil {
		f.Fatal(err)
	}
	<-done
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	base := map[engine.CF][][2][]byte{}
	for cf := engine.CF(0); cf < engine.NumCFs; cf++ {
		it, err := db.NewIterator(cf, engine.IterOptions{})
		if err != nil {
			f.Fatal(err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			base[cf] = append(base[cf], [2][]byte{append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)})
		}
		it.Close()
	}
	real := make([][]byte, len(metaKeys))
	var mask byte
	for i, k := range metaKeys {
		for _, kv := range base[engine.CFMeta] {
			if bytes.Equal(kv[0], k) {
				real[i], mask = kv[1], mask|1<<i
			}
		}
	}
	f.Add(mask, real[0], real[1], real[2], real[3], real[4])
	f.Add(byte(0), []byte{}, []byte{}, []byte{}, []byte{}, []byte{})
	f.Add(byte(0x1f), encodeU64(9), encodeU64(9), encodeU64(6), encodeU64(4), encodeU64(5))
	f.Add(byte(0x1f), encodeU64(9), encodeU64(1<<63), encodeU64(1<<63), encodeU64(1<<63), encodeU64(1<<63))
	f.Add(byte(0x0c), []byte{}, []byte{}, encodeU64(^uint64(1)), encodeU64(20), []byte{})

	f.Fuzz(func(t *testing.T, mask byte, applied, rev, sched, finished, cursor []byte) {
		b := db.NewBatch()
		for cf := engine.CF(0); cf < engine.NumCFs; cf++ {
			b.DeleteRange(cf, []byte{}, bytes.Repeat([]byte{0xff}, 64))
			for _, kv := range base[cf] {
				b.Put(cf, kv[0], kv[1])
			}
		}
		for i, v := range [][]byte{applied, rev, sched, finished, cursor} {
			if mask&(1<<i) != 0 {
				b.Put(engine.CFMeta, metaKeys[i], v)
			} else {
				b.Delete(engine.CFMeta, metaKeys[i])
			}
		}
		if err := db.Write(b, false); err != nil {
			t.Fatal(err)
		}
		s, err := Open(db, testCfg(), zap.NewNop())
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open failed with %v, not ErrCorrupt", err)
			}
			return
		}
		defer s.Close()
		cur, comp := s.Rev(), s.CompactedRev()
		if cur < 1 || comp < -1 || comp > cur {
			t.Fatalf("opened with revision %d, compacted %d", cur, comp)
		}
		if _, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}); err != nil {
			t.Fatalf("range at revision %d (compacted %d): %v", cur, comp, err)
		}
		if idx := s.AppliedIndex(); idx < ^uint64(0) {
			resp, err := s.Put(idx+1, &pb.PutRequest{Key: []byte("z"), Value: []byte("v")})
			if err != nil {
				t.Fatalf("put at index %d: %v", idx+1, err)
			}
			if resp.Header.Revision != cur+1 {
				t.Fatalf("put after revision %d made revision %d", cur, resp.Header.Revision)
			}
		}
	})
}

// FuzzValidateApply feeds arbitrary protobuf bytes to the Range, Put and
// DeleteRange validators; a request they accept must apply (or fail with
// one of the store's errors) without breaking the store. Txn has
// FuzzValidate.
func FuzzValidateApply(f *testing.F) {
	seed := func(r interface{ Marshal() ([]byte, error) }) []byte {
		b, err := r.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(seed(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("z"), Limit: 2, Revision: 3, SortOrder: 1, SortTarget: 4}))
	f.Add(seed(&pb.PutRequest{Key: []byte("a"), Value: []byte("v"), PrevKv: true, IgnoreValue: true}))
	f.Add(seed(&pb.DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, PrevKv: true}))
	f.Add(seed(&pb.RangeRequest{Key: []byte("a"), SortOrder: 9, MinModRevision: -1}))
	db := openEngine(f, f.TempDir())
	s := openStore(f, db, testCfg())
	f.Cleanup(func() {
		s.Close()
		db.Close()
	})
	index := uint64(0)
	known := func(err error) bool {
		for _, e := range []error{ErrCompacted, ErrFutureRev, ErrLeaseNotFound, ErrKeyNotFound} {
			if errors.Is(err, e) {
				return true
			}
		}
		return false
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var rr pb.RangeRequest
		if rr.Unmarshal(b) == nil && ValidateRange(&rr) == nil {
			if _, err := s.Range(t.Context(), &rr); err != nil && !known(err) {
				t.Fatalf("valid range %v failed: %v", &rr, err)
			}
		}
		var pr pb.PutRequest
		if pr.Unmarshal(b) == nil && ValidatePut(&pr) == nil {
			index++
			if _, err := s.Put(index, &pr); err != nil && !known(err) {
				t.Fatalf("valid put %v failed: %v", &pr, err)
			}
		}
		var dr pb.DeleteRangeRequest
		if dr.Unmarshal(b) == nil && ValidateDeleteRange(&dr) == nil {
			index++
			if _, err := s.DeleteRange(index, &dr); err != nil && !known(err) {
				t.Fatalf("valid delete %v failed: %v", &dr, err)
			}
		}
		if _, err := s.Range(t.Context(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true}); err != nil {
			t.Fatal(err)
		}
	})
}
