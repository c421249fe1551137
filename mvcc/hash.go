package mvcc

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"sort"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metastore/metastore/engine"
)

// HashKV is etcd's hash of the key space, bit for bit: CRC-32C over
// "key" followed by, in revision order, each version's etcd key-bucket key
// (8-byte main, '_', 8-byte sub, 't' for a tombstone) and its marshaled
// mvccpb.KeyValue (only the key for a tombstone). With C the compaction
// revision and R the hash revision, the versions are:
//
//	(a) every version with C < revision <= R;
//	(b) every version <= C that is its key's newest version <= R and a put
//	    (etcd's kvindex.Keep(R)) - or, when no key exists at R (Keep is
//	    empty), every version etcd's compaction at C keeps: each key's
//	    newest version <= C that is a put.
//
// This is the logical view etcd's hashByRev sees once compaction C has
// finished; here it does not depend on the compactor's progress, so
// members can compare at any time. As etcd, the hash of each compaction is
// computed before it runs (over its own (previous, C] window, only when
// the previous compaction had finished) and kept for the last
// hashCacheSize compactions; HashKV(R) returns the kept hash when R is one
// of those revisions.
//
// Cost: one pass over the key space per hashSortBatchKeys versions of (b),
// holding that many (revision, key) pairs in memory to sort them.

// hashCacheSize is etcd's hashStorageMaxSize.
const hashCacheSize = 10

// hashSortBatchKeys bounds the (b) versions held in memory at once; each
// further batch costs one more pass over the key space.
var hashSortBatchKeys = 1 << 20

// KeyValueHash is a hash result, as etcd's.
type KeyValueHash struct {
	Hash            uint32
	CompactRevision int64
	Revision        int64
}

type hashCache struct {
	mu     sync.Mutex
	hashes []KeyValueHash
}

func (c *hashCache) store(h KeyValueHash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hashes = append(c.hashes, h)
	sort.Slice(c.hashes, func(i, j int) bool { return c.hashes[i].Revision < c.hashes[j].Revision })
	if len(c.hashes) > hashCacheSize {
		c.hashes = c.hashes[len(c.hashes)-hashCacheSize:]
	}
}

func (c *hashCache) get(rev int64) (KeyValueHash, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.hashes {
		if h.Revision == rev {
			return h, true
		}
	}
	return KeyValueHash{}, false
}

// HashKV returns etcd's HashKV of revision rev (0: current) and the
// compaction revision it covers. rev below the compaction revision fails
// with ErrCompacted, above the current one with ErrFutureRev.
func (s *Store) HashKV(rev int64) (hash uint32, compactRev int64, err error) {
	h, err := s.HashByRev(rev)
	return h.Hash, h.CompactRevision, err
}

// HashByRev is HashKV returning etcd's full KeyValueHash.
func (s *Store) HashByRev(rev int64) (KeyValueHash, error) {
	if s.closed.Load() {
		return KeyValueHash{}, ErrClosed
	}
	if h, ok := s.hashes.get(rev); ok {
		return h, nil
	}
	st := s.state.Load()
	if rev > 0 && rev < st.compacted {
		return KeyValueHash{}, ErrCompacted
	} else if rev > 0 && rev > st.rev {
		return KeyValueHash{}, ErrFutureRev
	}
	if rev == 0 {
		rev = st.rev
	}
	snap, err := s.db.NewSnapshot()
	if err != nil {
		return KeyValueHash{}, err
	}
	defer snap.Close()
	if c := s.state.Load().compacted; c != st.compacted {
		// A compaction started: the snapshot may miss versions of the
		// window we were asked for. Start again with the new state.
		return s.HashByRev(rev)
	}
	return hashWindow(snap, st.compacted, rev, false, nil)
}

// hashCompaction is the hash etcd computes while compacting at rev after
// a finished compaction at prev. It is paced as the compaction's walk
// (p): a hash of a million revisions is a million history lookups, which
// unpaced took a third of a busy core from the requests for tens of
// seconds.
func (s *Store) hashCompaction(prev, rev int64, p *pacer) (KeyValueHash, error) {
	snap, err := s.db.NewSnapshot()
	if err != nil {
		return KeyValueHash{}, err
	}
	defer snap.Close()
	return hashWindow(snap, prev, rev, true, p)
}

// hashWindow hashes versions (a) in (c, r] and (b) <= c. forCompaction
// selects the compaction's keep set, which also counts a tombstone at
// exactly r as kept (it only matters for the "keep set is empty" rule).
// A non-nil p paces the walk.
func hashWindow(snap *engine.Snapshot, c, r int64, forCompaction bool, p *pacer) (KeyValueHash, error) {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	h.Write([]byte("key"))
	if r < 1 {
		// etcd hashes only versions at or below r: a negative revision
		// (HashKV takes any int64) hashes the empty bucket.
		return KeyValueHash{Hash: h.Sum32(), CompactRevision: c, Revision: r}, nil
	}
	rd := reader{src: snap, rev: r}
	defer rd.close()

	keepNonEmpty := false
	if forCompaction {
		// A non-inline DELETE at exactly r is a tombstone etcd keeps.
		v, ok, err := snap.Get(engine.CFEvents, eventKey(r))
		if err != nil {
			return KeyValueHash{}, err
		}
		if ok {
			evs, err := decodeEvents(v, r)
			if err != nil {
				return KeyValueHash{}, err
			}
			for _, e := range evs {
				if e.del && e.inline == nil {
					keepNonEmpty = true
				}
			}
		}
	}

	// (b), in batches of the smallest revisions not yet hashed. The first
	// pass also tells whether etcd's keep set is empty.
	if c >= 1 {
		after := Revision{Main: 0, Sub: -1}
		collect := func(after Revision) (*revHeap, error) {
			return collectKept(snap, &rd, c, r, after, hashSortBatchKeys, nil)
		}
		for pass := 0; ; pass++ {
			var batch *revHeap
			var err error
			if pass == 0 {
				var anyLive bool
				batch, err = collectKept(snap, &rd, c, r, after, hashSortBatchKeys, &anyLive)
				if err == nil && !keepNonEmpty && !anyLive {
					// Keep set empty: hash every newest-<=c put instead.
					collect = func(after Revision) (*revHeap, error) {
						return collectAllNewest(snap, &rd, c, after, hashSortBatchKeys)
					}
					batch, err = collect(after)
				}
			} else {
				batch, err = collect(after)
			}
			if err != nil {
				return KeyValueHash{}, err
			}
			for _, kr := range batch.items {
				if err := p.tick(); err != nil {
					return KeyValueHash{}, err
				}
				rec, err := versionAt(&rd, snap, kr.key, kr.rev.Main)
				if err != nil {
					return KeyValueHash{}, err
				}
				hashVersion(h, kr.key, &rec)
			}
			if len(batch.items) < hashSortBatchKeys {
				break
			}
			after = batch.items[len(batch.items)-1].rev
		}
	}

	// (a): every version in (c, r], in revision order, from the events.
	lo := max(c+1, 1)
	it, err := snap.NewIterator(engine.CFEvents, engine.IterOptions{
		Lower: eventKey(lo), Upper: eventKey(r + 1), NoFillCache: true})
	if err != nil {
		return KeyValueHash{}, err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		rev, err := decodeEventKey(it.Key())
		if err != nil {
			return KeyValueHash{}, err
		}
		evs, err := decodeEvents(it.Value(), rev)
		if err != nil {
			return KeyValueHash{}, err
		}
		if err := p.tick(); err != nil {
			return KeyValueHash{}, err
		}
		for i := range evs {
			e := &evs[i]
			var rec record
			if e.inline != nil {
				rec, err = decodeRecord(e.inline)
			} else {
				rec, err = versionAt(&rd, snap, e.key, rev)
			}
			if err != nil {
				return KeyValueHash{}, fmt.Errorf("mvcc: hash: event %d.%d: %w", rev, e.sub, err)
			}
			hashVersion(h, e.key, &rec)
		}
	}
	if err := it.Error(); err != nil {
		return KeyValueHash{}, err
	}
	return KeyValueHash{Hash: h.Sum32(), CompactRevision: c, Revision: r}, nil
}

// hashVersion writes one version as etcd's kvHasher does.
func hashVersion(h hash.Hash32, key []byte, rec *record) {
	var rk [18]byte
	binary.BigEndian.PutUint64(rk[:8], uint64(rec.mod.Main))
	rk[8] = '_'
	binary.BigEndian.PutUint64(rk[9:17], uint64(rec.mod.Sub))
	n := 17
	kv := mvccpb.KeyValue{Key: key}
	if rec.tombstone {
		rk[17] = 't'
		n = 18
	} else {
		kv = toKV(key, rec)
	}
	v, err := kv.Marshal()
	if err != nil {
		panic(fmt.Sprintf("mvcc: marshal KeyValue: %v", err))
	}
	h.Write(rk[:n])
	h.Write(v)
}

type keyRev struct {
	rev Revision
	key []byte
}

// revHeap is a max-heap on revision holding the smallest revisions seen.
type revHeap struct{ items []keyRev }

func (h *revHeap) Len() int           { return len(h.items) }
func (h *revHeap) Less(i, j int) bool { return h.items[i].rev.GreaterThan(h.items[j].rev) }
func (h *revHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *revHeap) Push(x any)         { h.items = append(h.items, x.(keyRev)) }
func (h *revHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

func (h *revHeap) offer(kr keyRev, limit int) {
	if len(h.items) < limit {
		kr.key = bytes.Clone(kr.key)
		heap.Push(h, kr)
		return
	}
	if h.items[0].rev.GreaterThan(kr.rev) {
		kr.key = bytes.Clone(kr.key)
		h.items[0] = kr
		heap.Fix(h, 0)
	}
}

func (h *revHeap) sorted() *revHeap {
	sort.Slice(h.items, func(i, j int) bool { return h.items[j].rev.GreaterThan(h.items[i].rev) })
	return h
}

// collectKept scans the key space for versions <= c that are their key's
// newest version <= r and puts, returning the limit smallest with revision
// after `after`; *anyLive (if not nil) reports whether any key exists at r.
func collectKept(snap *engine.Snapshot, rd *reader, c, r int64, after Revision, limit int, anyLive *bool) (*revHeap, error) {
	h := &revHeap{}
	var live bool
	err := scanAll(snap, func(k []byte, latest *record) error {
		var vr record
		var ok bool
		if latest.mod.Main <= r {
			vr, ok = *latest, true
		} else {
			var err error
			if vr, ok, err = rd.historyAt(k, r); err != nil {
				return err
			}
		}
		if !ok || vr.tombstone {
			return nil
		}
		live = true
		if vr.mod.Main <= c && vr.mod.GreaterThan(after) {
			h.offer(keyRev{rev: vr.mod, key: k}, limit)
		}
		return nil
	})
	if anyLive != nil {
		*anyLive = live
	}
	return h.sorted(), err
}

// collectAllNewest collects each key's newest version <= c when it is a
// put, as collectKept does.
func collectAllNewest(snap *engine.Snapshot, rd *reader, c int64, after Revision, limit int) (*revHeap, error) {
	h := &revHeap{}
	err := scanAll(snap, func(k []byte, latest *record) error {
		var vc record
		var ok bool
		if latest.mod.Main <= c {
			vc, ok = *latest, true
		} else {
			var err error
			if vc, ok, err = rd.historyAt(k, c); err != nil {
				return err
			}
		}
		if ok && !vc.tombstone && vc.mod.GreaterThan(after) {
			h.offer(keyRev{rev: vc.mod, key: k}, limit)
		}
		return nil
	})
	return h.sorted(), err
}

// scanAll calls fn with every CFKV key and latest record (value aliased).
func scanAll(snap *engine.Snapshot, fn func(k []byte, latest *record) error) error {
	it, err := snap.NewIterator(engine.CFKV, engine.IterOptions{NoFillCache: true})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		rec, err := decodeRecord(it.Value())
		if err != nil {
			return fmt.Errorf("mvcc: hash: kv %q: %w", it.Key(), err)
		}
		if err := fn(it.Key(), &rec); err != nil {
			return err
		}
	}
	return it.Error()
}
