package mvcc

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// checkCountIndex fails unless every bucket of s's count index holds the
// number of keys live in its span at the index's revision, counted by a
// plain walk of CFKV, and every bucket but a lone one is within its bounds
// (a bucket may stay below the merge bound when no neighbour can take it).
// REQUIRES: no write running.
func checkCountIndex(t testing.TB, s *Store) {
	t.Helper()
	if s.cidx == nil {
		return
	}
	bounds, live, rev := s.cidx.buckets()
	if rev != s.Rev() {
		t.Fatalf("count index at revision %d, store at %d", rev, s.Rev())
	}
	if len(bounds) == 0 || len(bounds[0]) != 0 || len(bounds) != len(live) {
		t.Fatalf("count index layout: %d bounds (first %q), %d counts", len(bounds), bounds[0], len(live))
	}
	target := int64(s.cidx.target)
	for i := range bounds {
		if i > 0 && bytes.Compare(bounds[i-1], bounds[i]) >= 0 {
			t.Fatalf("count index bounds out of order at %d: %q, %q", i, bounds[i-1], bounds[i])
		}
		var end []byte
		if i+1 < len(bounds) {
			end = bounds[i+1]
		}
		rd := reader{src: s.db, rev: rev}
		want := len(refLive(t, &rd, bounds[i], end))
		rd.close()
		if live[i] != int64(want) {
			t.Fatalf("count index bucket %d [%q, %q): %d live, a walk finds %d", i, bounds[i], end, live[i], want)
		}
		if live[i] > 2*target {
			t.Fatalf("count index bucket %d [%q, %q): %d live, above twice the target %d", i, bounds[i], end, live[i], target)
		}
	}
}

// TestCountIndexRebalance drives one store through growth, shrinkage and
// regrowth in every order, checking the index after each step: buckets
// split past twice the target, merge below a quarter, and always match a
// walk.
func TestCountIndexRebalance(t *testing.T) {
	cfg := testCfg()
	cfg.CountIndexBucketKeys = 8
	db := openEngine(t, t.TempDir())
	s := openStore(t, db, cfg)
	defer func() { s.Close(); db.Close() }()
	index := uint64(0)
	key := func(i int) []byte { return []byte(fmt.Sprintf("r%04d", i)) }
	put := func(i int) {
		index++
		if _, err := s.Put(index, &pb.PutRequest{Key: key(i), Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	del := func(i, j int) {
		index++
		if _, err := s.DeleteRange(index, &pb.DeleteRangeRequest{Key: key(i), RangeEnd: key(j)}); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name string
		do   func()
		// minBuckets, maxBuckets bound the layout after the step.
		minBuckets, maxBuckets int
	}{
		{"ascending creates", func() {
			for i := 0; i < 200; i += 2 {
				put(i)
			}
		}, 100 / 16, 100 / 2},
		{"creates between", func() {
			for i := 1; i < 200; i += 2 {
				put(i)
			}
		}, 200 / 16, 200 / 2},
		{"overwrites change nothing", func() {
			for i := 0; i < 200; i += 3 {
				put(i)
			}
		}, 200 / 16, 200 / 2},
		{"delete most", func() { del(10, 190) }, 1, 20 / 2},
		{"delete all", func() { del(0, 200) }, 1, 1},
		{"descending creates", func() {
			for i := 199; i >= 0; i-- {
				put(i)
			}
		}, 200 / 16, 200 / 2},
	}
	for _, st := range steps {
		st.do()
		checkCountIndex(t, s)
		bounds, _, _ := s.cidx.buckets()
		if n := len(bounds); n < st.minBuckets || n > st.maxBuckets {
			t.Fatalf("%s: %d buckets, want %d to %d", st.name, n, st.minBuckets, st.maxBuckets)
		}
	}
	// A reopened store builds the same counts from the engine.
	s.Close()
	s = openStore(t, db, cfg)
	checkCountIndex(t, s)
}

// TestCountIndexDifferential compares the counts of ranges served with the
// count index (limited pages and count_only, at the current and older
// revisions, with the correction budget unlimited or the default) with
// refLive, on the random store of TestCountDifferential, then writes
// more and checks the index against walks.
func TestCountIndexDifferential(t *testing.T) {
	seed := testSeed(t)
	rnd := rand.New(rand.NewSource(seed))
	const n = 3000
	s, db := countStore(t, rnd, n)
	checkCountIndex(t, s)
	cur, compacted := s.Rev(), s.CompactedRev()
	ctx := context.Background()
	tests := 150
	if testing.Short() {
		tests = 30
	}
	used := 0
	for q := 0; q < tests; q++ {
		rev := cur
		if rnd.Intn(2) == 0 {
			rev = compacted + rnd.Int63n(cur-compacted+1)
		}
		var key, end []byte
		switch rnd.Intn(4) {
		case 0:
			key, end = []byte{}, []byte{} // everything
		case 1:
			key, end = countKey(rnd.Intn(n)), []byte{}
		default:
			i := rnd.Intn(n)
			key, end = countKey(i), countKey(i+rnd.Intn(n))
		}
		unlimited := rnd.Intn(2) == 0
		name := fmt.Sprintf("seed %d query %d: rev %d (current %d) [%q, %q) unlimited %v", seed, q, rev, cur, key, end, unlimited)
		rd := reader{src: db, rev: rev}
		want := refLive(t, &rd, key, end)
		rd.close()
		ci := cloneIndex(s.cidx) // so the budget is this query's
		if unlimited {
			ci.minCorrection = 1 << 40
		}
		for _, fullKeys := range []int{0, 1, 100} {
			rd := reader{src: db, rev: rev, cidx: ci}
			count, err := rd.scan(ctx, key, end, fullKeys, func([]byte, *record) bool { return true })
			rd.close()
			if err != nil {
				t.Fatalf("%s: full keys %d: %v", name, fullKeys, err)
			}
			if count != len(want) {
				t.Fatalf("%s: full keys %d: count %d, want %d", name, fullKeys, count, len(want))
			}
			if rd.usedHistory || rev == cur {
				used++
			}
		}
	}
	if used == 0 {
		t.Fatal("no query used the index")
	}
	checkCountIndex(t, s)
}

// TestCountIndexServesPages checks, through Range, that a limited page of
// a large range returns etcd's count when the count comes from the index
// (the walk of the same range with the index off is the reference), and
// that the index really spared the walk: the page reads only the keys of
// its two edge buckets.
func TestCountIndexServesPages(t *testing.T) {
	ctx := context.Background()
	counts := map[bool]string{}
	for _, indexed := range []bool{false, true} {
		cfg := testCfg()
		cfg.CountIndexBucketKeys = 16
		if !indexed {
			cfg.CountIndexBucketKeys = -1
		}
		db := openEngine(t, t.TempDir())
		s := openStore(t, db, cfg)
		rnd := rand.New(rand.NewSource(7))
		index := uint64(0)
		for i := 0; i < 2000; i++ {
			index++
			k := fmt.Sprintf("/registry/pods/ns%d/p%04d", i%7, rnd.Intn(1500))
			var err error
			if rnd.Intn(5) == 0 {
				_, err = s.DeleteRange(index, &pb.DeleteRangeRequest{Key: []byte(k)})
			} else {
				_, err = s.Put(index, &pb.PutRequest{Key: []byte(k), Value: []byte("v")})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		var out strings.Builder
		for _, r := range []*pb.RangeRequest{
			{Key: []byte("/registry/pods/"), RangeEnd: []byte("/registry/pods0"), Limit: 100},
			{Key: []byte("/registry/pods/ns3/"), RangeEnd: []byte("/registry/pods/ns30"), Limit: 10},
			{Key: []byte("/registry/pods/ns2/p0500"), RangeEnd: []byte("/registry/pods0"), Limit: 1},
			{Key: []byte("/registry/pods/"), RangeEnd: []byte("/registry/pods0"), CountOnly: true},
			{Key: []byte("/registry/pods/"), RangeEnd: []byte("/registry/pods0"), Limit: 5, Revision: 1000},
			{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true, Revision: 1200},
		} {
			resp, err := s.Range(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "%s..%s rev %d: count %d kvs %d more %v\n", r.Key, r.RangeEnd, r.Revision, resp.Count, len(resp.Kvs), resp.More)
		}
		counts[indexed] = out.String()
		if indexed {
			checkCountIndex(t, s)
			// The page's count comes from the index: one that claims
			// 1000 more keys in a middle bucket shifts it by 1000.
			ci := cloneIndex(s.cidx)
			ci.live[len(ci.live)/2] += 1000
			for _, rev := range []int64{s.Rev(), s.Rev() - 3} {
				want, err := s.Range(ctx, &pb.RangeRequest{Key: []byte("/registry/pods/"), RangeEnd: []byte("/registry/pods0"), CountOnly: true, Revision: rev})
				if err != nil {
					t.Fatal(err)
				}
				rd := reader{src: db, rev: rev, cidx: ci}
				count, err := rd.scan(ctx, []byte("/registry/pods/"), []byte("/registry/pods0"), 100, func([]byte, *record) bool { return true })
				rd.close()
				if err != nil {
					t.Fatal(err)
				}
				if int64(count) != want.Count+1000 {
					t.Fatalf("rev %d: count %d with a bucket 1000 too high, want %d: the index did not serve the count", rev, count, want.Count+1000)
				}
			}
		}
		s.Close()
		db.Close()
	}
	if counts[false] != counts[true] {
		t.Fatalf("with the index:\n%s\nwalking:\n%s", counts[true], counts[false])
	}
}

// cloneIndex returns a copy of ci's layout and counts, for a test to
// change without touching the store's.
func cloneIndex(ci *countIndex) *countIndex {
	c := newCountIndex(ci.target)
	bounds, live, rev := ci.buckets()
	c.bounds, c.live = bounds, live
	c.rev.Store(rev)
	return c
}
