package mvcc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metastore/metastore/engine"
)

// Differential tests of scan's counting phase (engine.CountRun in runs
// between pending writes) against refLive, which reads every candidate key
// on its own with reader.get: no scan, no CountRun.

// refLive returns the keys in [key, end) (end empty: unbounded) that exist
// at r's revision, in order: every CFKV key and pending key of the range,
// each looked up with r.get.
func refLive(t testing.TB, r *reader, key, end []byte) []string {
	t.Helper()
	it, err := r.src.NewIterator(engine.CFKV, engine.IterOptions{Lower: key, Upper: end})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	cand := map[string]bool{}
	for valid := it.SeekGE(key); valid; valid = it.Next() {
		cand[string(it.Key())] = true
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	if r.ov != nil {
		for _, e := range r.ov.keysIn(key, end) {
			cand[string(e.key)] = true
		}
	}
	var live []string
	for k := range cand {
		_, ok, err := r.get([]byte(k))
		if err != nil {
			t.Fatalf("get %q: %v", k, err)
		}
		if ok {
			live = append(live, k)
		}
	}
	sort.Strings(live)
	return live
}

func countKey(i int) []byte { return []byte(fmt.Sprintf("k%05d", i)) }

// countStore is a store of about n keys with tombstones, recreated keys,
// history, a compaction and both memtable and SST data: n puts, then
// rounds of overwrites, single deletes, range deletes and recreations.
func countStore(t testing.TB, rnd *rand.Rand, n int) (*Store, *engine.DB) {
	db := openEngine(t, t.TempDir())
	s := openStore(t, db, testCfg())
	t.Cleanup(func() { s.Close(); db.Close() })
	index := uint64(0)
	put := func(i int) {
		index++
		v := []byte(fmt.Sprintf("v%d", rnd.Intn(1000)))
		if _, err := s.Put(index, &pb.PutRequest{Key: countKey(i), Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	del := func(i, j int) { // [i, j); j < 0: the key i alone
		index++
		d := &pb.DeleteRangeRequest{Key: countKey(i)}
		if j >= 0 {
			d.RangeEnd = countKey(j)
		}
		if _, err := s.DeleteRange(index, d); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		put(i)
	}
	for round := 0; round < 4; round++ {
		if round == 1 {
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if round == 2 {
			index++
			done, err := s.Compact(index, s.Rev()-int64(n/4))
			if err != nil {
				t.Fatal(err)
			}
			<-done
		}
		for k := 0; k < n/3; k++ {
			switch x := rnd.Intn(10); {
			case x < 6:
				put(rnd.Intn(n + n/10)) // some keys appear only now
			case x < 9:
				del(rnd.Intn(n), -1)
				i := rnd.Intn(n)
				del(i, i+1)
			default:
				i := rnd.Intn(n)
				del(i, i+1+rnd.Intn(200))
			}
		}
	}
	return s, db
}

// randomOverlay returns pending writes at rev+1 over the key space: puts
// of existing and new keys, and tombstones.
func randomOverlay(rnd *rand.Rand, rev int64, n, size int) *overlay {
	ov := &overlay{}
	for i := 0; i < size; i++ {
		key := countKey(rnd.Intn(n + n/10))
		if rnd.Intn(4) == 0 {
			key = append(key, 'x')
		}
		rec := record{mod: Revision{Main: rev + 1, Sub: int64(i)}, create: rev + 1, version: 1}
		if rnd.Intn(2) == 0 {
			rec = record{tombstone: true, mod: Revision{Main: rev + 1, Sub: int64(i)}}
		}
		ov.set(key, ovEntry{rec: rec})
	}
	return ov
}

// TestCountDifferential compares scan's counts (count only, and after
// limits of every size) with refLive on a random store, at random
// revisions, over random ranges, with and without pending writes.
func TestCountDifferential(t *testing.T) {
	seed := testSeed(t)
	rnd := rand.New(rand.NewSource(seed))
	const n = 3000 // several CountRun batches and context-check periods
	s, db := countStore(t, rnd, n)
	cur, compacted := s.Rev(), s.CompactedRev()
	ctx := context.Background()
	tests := 150
	if testing.Short() {
		tests = 30
	}
	for q := 0; q < tests; q++ {
		rev := compacted + rnd.Int63n(cur-compacted+1)
		var key, end []byte
		switch rnd.Intn(4) {
		case 0:
			key, end = []byte("k"), []byte{} // everything, unbounded
		case 1:
			key, end = countKey(rnd.Intn(n)), []byte("l")
		default:
			i := rnd.Intn(n)
			key, end = countKey(i), countKey(i+rnd.Intn(n/2))
		}
		var ov *overlay
		if rnd.Intn(2) == 0 {
			ov = randomOverlay(rnd, rev, n, rnd.Intn(60))
		}
		name := fmt.Sprintf("seed %d query %d: rev %d [%q, %q) overlay %d", seed, q, rev, key, end, ov.len())
		rd := reader{src: db, rev: rev, ov: ov}
		want := refLive(t, &rd, key, end)
		for _, fullKeys := range []int{0, 1, rnd.Intn(n), -1} {
			var got []string
			count, err := rd.scan(ctx, key, end, fullKeys, func(k []byte, _ *record) bool {
				got = append(got, string(k))
				return true
			})
			if err != nil {
				t.Fatalf("%s: full keys %d: %v", name, fullKeys, err)
			}
			if count != len(want) {
				t.Fatalf("%s: full keys %d: count %d, want %d", name, fullKeys, count, len(want))
			}
			wantFull := want
			if fullKeys >= 0 {
				wantFull = want[:min(fullKeys, len(want))]
			}
			if fmt.Sprint(got) != fmt.Sprint(wantFull) {
				t.Fatalf("%s: full keys %d: visited %d keys, want %d", name, fullKeys, len(got), len(wantFull))
			}
		}
		rd.close()
	}
}

// TestCountInTxn: count_only and limited ranges inside a txn count the
// txn's own pending writes, as a read after the commit does.
func TestCountInTxn(t *testing.T) {
	seed := testSeed(t)
	rnd := rand.New(rand.NewSource(seed))
	const n = 2500
	s, db := countStore(t, rnd, n)
	index := s.AppliedIndex()
	for q := 0; q < 20; q++ {
		// One range delete and puts of other keys (etcd refuses a txn
		// that writes a key twice).
		var ops []*pb.RequestOp
		d := rnd.Intn(n)
		dEnd := d + rnd.Intn(300)
		ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{
			RequestDeleteRange: &pb.DeleteRangeRequest{Key: countKey(d), RangeEnd: countKey(dEnd)}}})
		seen := map[int]bool{}
		for i := rnd.Intn(20); i > 0; i-- {
			k := rnd.Intn(n + n/10)
			if (k >= d && k < dEnd) || seen[k] {
				continue
			}
			seen[k] = true
			ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{
				RequestPut: &pb.PutRequest{Key: countKey(k), Value: []byte("t")}}})
		}
		i := rnd.Intn(n)
		key, end := countKey(i), countKey(i+rnd.Intn(n))
		if rnd.Intn(3) == 0 {
			end = []byte{0} // etcd's "every key >= key"
		}
		ops = append(ops,
			&pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key, RangeEnd: end, CountOnly: true}}},
			&pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key, RangeEnd: end, Limit: 3}}})
		index++
		resp, err := s.Txn(index, &pb.TxnRequest{Success: ops})
		if err != nil {
			t.Fatalf("seed %d: txn %d: %v", seed, q, err)
		}
		rd := reader{src: db, rev: s.Rev()}
		want := len(refLive(t, &rd, key, mkGteRange(end)))
		rd.close()
		rs := resp.Responses[len(resp.Responses)-2:]
		if c1, c2 := rs[0].GetResponseRange().Count, rs[1].GetResponseRange().Count; c1 != int64(want) || c2 != int64(want) {
			t.Fatalf("seed %d: txn %d: counts in the txn %d (count only) %d (limit 3), %d after it", seed, q, c1, c2, want)
		}
	}
}

// TestCountContext: a long count stops on a cancelled context; a short
// one finishes before its first check, as before.
func TestCountContext(t *testing.T) {
	db := openEngine(t, t.TempDir())
	s := openStore(t, db, testCfg())
	defer func() { s.Close(); db.Close() }()
	const n = 3 * ctxCheckKeys
	for i := 0; i < n; i++ {
		if _, err := s.Put(uint64(i+1), &pb.PutRequest{Key: countKey(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name     string
		end      int
		fullKeys int
		ov       *overlay
		canceled bool
	}{
		{"short count", 10, 0, nil, false},
		{"long count", n, 0, nil, true},
		{"long count after a limit", n, 5, nil, true},
		{"long count with pending writes", n, 0, randomOverlay(rand.New(rand.NewSource(1)), s.Rev(), n, 40), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd := reader{src: db, rev: s.Rev(), ov: tt.ov}
			defer rd.close()
			_, err := rd.scan(ctx, countKey(0), countKey(tt.end), tt.fullKeys, func([]byte, *record) bool { return true })
			if got := errors.Is(err, context.Canceled); got != tt.canceled {
				t.Fatalf("scan: %v, want canceled %v", err, tt.canceled)
			}
		})
	}
}

// TestCountMalformed: a corrupt CFKV record in the middle of a run is
// reported, never counted, by the counting phase as by the full one.
func TestCountMalformed(t *testing.T) {
	for _, bad := range [][]byte{
		nil,
		{0},
		{0, 5, 0, 6, 1, 0}, // a put whose create is above its mod revision
		{flagTombstone, 5, 0, 0, 0, 7},
		{4, 5, 0, 5, 1, 0},
	} {
		t.Run(fmt.Sprintf("%x", bad), func(t *testing.T) {
			db := openEngine(t, t.TempDir())
			s := openStore(t, db, testCfg())
			defer func() { s.Close(); db.Close() }()
			for i := 0; i < 2000; i++ {
				if _, err := s.Put(uint64(i+1), &pb.PutRequest{Key: countKey(i)}); err != nil {
					t.Fatal(err)
				}
			}
			b := db.NewBatch()
			b.Put(engine.CFKV, countKey(1500), bad)
			if err := db.Write(b, false); err != nil {
				t.Fatal(err)
			}
			for _, fullKeys := range []int{0, 10, -1} {
				rd := reader{src: db, rev: s.Rev()}
				count, err := rd.scan(context.Background(), countKey(0), []byte("l"), fullKeys, func([]byte, *record) bool { return true })
				rd.close()
				if !errors.Is(err, ErrCorrupt) || !bytes.Contains([]byte(err.Error()), countKey(1500)) {
					t.Fatalf("full keys %d: count %d, error %v; want ErrCorrupt naming the key", fullKeys, count, err)
				}
			}
		})
	}
}
