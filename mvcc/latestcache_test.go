package mvcc

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metastore/metastore/engine"
)

// checkLatestCache fails unless every entry of s's latest cache is a live
// record and byte for byte what CFKV holds for its key, and the cache's
// byte count is the sum of its buffers.
func checkLatestCache(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.lc
	if c == nil {
		return
	}
	var sum int64
	for i := range c.slots {
		sl := &c.slots[i]
		sum += int64(cap(sl.buf))
		if sl.buf == nil {
			continue
		}
		key, raw := sl.buf[:sl.klen], sl.buf[sl.klen:]
		if raw[0]&flagTombstone != 0 {
			t.Fatalf("latest cache holds a tombstone of %q", key)
		}
		v, ok, err := s.db.Get(engine.CFKV, key)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || !bytes.Equal(v, raw) {
			t.Fatalf("latest cache %q = %x, CFKV has %x (found %v)", key, raw, v, ok)
		}
	}
	if sum != c.bytes || c.bytes > c.max {
		t.Fatalf("latest cache counts %d bytes, buffers hold %d, bound %d", c.bytes, sum, c.max)
	}
}

// TestLatestCache: the table's own rules, one step at a time.
func TestLatestCache(t *testing.T) {
	live := func(v string) []byte {
		return appendRecord(nil, &record{mod: Revision{Main: 5}, create: 2, version: 3, value: []byte(v)})
	}
	tomb := appendRecord(nil, &record{mod: Revision{Main: 6}, tombstone: true})
	type step struct {
		op, key string
		raw     []byte
		want    []byte // get: the record, nil for a miss
	}
	big := live(strings.Repeat("x", latestCacheMaxEntryBytes))
	for _, tc := range []struct {
		name     string
		maxBytes int64
		steps    []step
	}{
		{"set then get", 4096, []step{{"set", "a", live("1"), nil}, {"get", "a", nil, live("1")}, {"get", "b", nil, nil}}},
		{"overwrite", 4096, []step{{"set", "a", live("1"), nil}, {"set", "a", live("22"), nil}, {"get", "a", nil, live("22")}}},
		{"tombstone drops", 4096, []step{{"set", "a", live("1"), nil}, {"set", "a", tomb, nil}, {"get", "a", nil, nil}}},
		{"drop", 4096, []step{{"set", "a", live("1"), nil}, {"drop", "a", nil, nil}, {"get", "a", nil, nil}}},
		{"too large drops", 1 << 20, []step{{"set", "a", live("1"), nil}, {"set", "a", big, nil}, {"get", "a", nil, nil}}},
		{"over budget not cached", 256, []step{{"set", "a", live(strings.Repeat("y", 300)), nil}, {"get", "a", nil, nil}}},
		// One slot: b replaces a, and a's tombstone leaves b alone.
		{"collision", 200, []step{{"set", "a", live("1"), nil}, {"set", "b", live("2"), nil}, {"get", "a", nil, nil},
			{"get", "b", nil, live("2")}, {"set", "a", tomb, nil}, {"drop", "a", nil, nil}, {"get", "b", nil, live("2")}}},
		{"reset", 4096, []step{{"set", "a", live("1"), nil}, {"reset", "", nil, nil}, {"get", "a", nil, nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newLatestCache(tc.maxBytes)
			for i, st := range tc.steps {
				switch st.op {
				case "set":
					c.set(st.key, st.raw)
				case "drop":
					c.drop([]byte(st.key))
				case "reset":
					c.reset()
				case "get":
					got, ok := c.get([]byte(st.key))
					if ok != (st.want != nil) || !bytes.Equal(got, st.want) {
						t.Fatalf("step %d: get %q = %x, %v; want %x", i, st.key, got, ok, st.want)
					}
				}
				var sum int64
				for _, sl := range c.slots {
					sum += int64(cap(sl.buf))
				}
				if sum != c.bytes || c.bytes > c.max {
					t.Fatalf("step %d: %d bytes counted, %d held, bound %d", i, c.bytes, sum, c.max)
				}
			}
		})
	}
	if newLatestCache(-1) != nil || newLatestCache(0) != nil {
		t.Fatal("a cache without a budget")
	}
}

// TestLatestCacheServesPuts: overwrites of keys the cache holds read no
// engine record for the version they replace, and what they write is what
// they would have written without it (same history, versions and hash).
func TestLatestCacheServesPuts(t *testing.T) {
	hashes := map[bool]uint32{}
	for _, cached := range []bool{false, true} {
		cfg := testCfg()
		cfg.LatestCacheBytes = -1
		if cached {
			cfg.LatestCacheBytes = 1 << 20
		}
		s := openStore(t, openEngine(t, t.TempDir()), cfg)
		index := uint64(0)
		for round := 0; round < 5; round++ {
			s.BeginGroup()
			for k := 0; k < 20; k++ {
				index++
				req := &pb.PutRequest{Key: []byte(fmt.Sprint("k", k)), Value: []byte(fmt.Sprint(round))}
				if _, err := s.Put(index, req); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.EndGroup(); err != nil {
				t.Fatal(err)
			}
			index++
			if _, err := s.DeleteRange(index, &pb.DeleteRangeRequest{Key: []byte("k3")}); err != nil {
				t.Fatal(err)
			}
		}
		if cached {
			s.mu.Lock()
			_, hit := s.lc.get([]byte("k7"))
			_, tombHit := s.lc.get([]byte("k3"))
			s.mu.Unlock()
			if !hit || tombHit {
				t.Fatalf("cache: k7 cached %v, deleted k3 cached %v", hit, tombHit)
			}
		}
		checkLatestCache(t, s)
		kv, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("k7"), Revision: 30})
		if err != nil {
			t.Fatal(err)
		}
		if len(kv.Kvs) != 1 || kv.Kvs[0].Version != 2 || string(kv.Kvs[0].Value) != "1" {
			t.Fatalf("k7 at revision 30: %v", kv.Kvs)
		}
		h, err := s.HashByRev(0)
		if err != nil {
			t.Fatal(err)
		}
		hashes[cached] = h.Hash
	}
	if hashes[false] != hashes[true] {
		t.Fatalf("hash with the cache %d, without %d", hashes[true], hashes[false])
	}
}
