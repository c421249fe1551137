package mvcc

import (
	"bytes"

	"github.com/cespare/xxhash/v2"
)

// latestCache is the writer's cache of the CFKV records it wrote last, so
// that a put of a recently written key does not search RocksDB for the
// version it replaces (tx.latest, and a group's txns' reads of single keys,
// through groupSource): on a put load that search, a memtable skiplist
// walk over a cgo call, is about a tenth of the member's CPU.
//
// It holds live records only. A tombstone is never cached, and writing one
// drops the key, so the one other writer of CFKV, the compactor (which
// deletes only tombstones, compact.go), can never make an entry stale. Every
// entry is exactly the bytes CFKV holds for its key, written into the cache
// only after the engine batch that wrote them succeeded (flushGroupLocked),
// and dropped before a non-grouped txn's batch is written
// (writeTxn.write). A restore or reopen starts it empty (load).
//
// Shape: a direct-mapped table of 2^n slots indexed by the key's xxhash,
// each slot one buffer of key and record reused in place; a key that maps
// to a taken slot replaces its entry. Bounds: Config.LatestCacheBytes of
// keys and records in all (entries past it are not cached), records of at
// most latestCacheMaxEntryBytes, and one slot per
// latestCacheBytesPerSlot of the budget.
//
// REQUIRES: Store.mu held for every call.
type latestCache struct {
	slots []latestSlot
	mask  uint64
	// bytes is the sum of the slots' buffer capacities; max its bound.
	bytes, max int64
}

type latestSlot struct {
	buf  []byte // key then record; nil: empty
	klen int
}

const (
	// latestCacheMaxEntryBytes bounds one cached key and record: larger
	// values are rarely overwritten at the rates where the cache pays.
	latestCacheMaxEntryBytes = 2 << 10
	// latestCacheBytesPerSlot sizes the table: one slot per this many
	// bytes of budget (a 256 B value with its key and header is ~300).
	latestCacheBytesPerSlot = 256
)

// newLatestCache returns a cache bounded by maxBytes, nil when maxBytes <= 0
// (every method accepts a nil cache).
func newLatestCache(maxBytes int64) *latestCache {
	if maxBytes <= 0 {
		return nil
	}
	n := uint64(1)
	for n < uint64(maxBytes/latestCacheBytesPerSlot) {
		n <<= 1
	}
	return &latestCache{slots: make([]latestSlot, n), mask: n - 1, max: maxBytes}
}

func (c *latestCache) slot(key []byte) *latestSlot {
	return &c.slots[xxhash.Sum64(key)&c.mask]
}

// holds reports whether the slot's entry is key's.
func (sl *latestSlot) holds(key []byte) bool {
	return sl.buf != nil && bytes.Equal(sl.buf[:sl.klen], key)
}

// get returns key's cached record, aliasing the cache: valid until the
// next set or drop.
func (c *latestCache) get(key []byte) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	sl := c.slot(key)
	if !sl.holds(key) {
		return nil, false
	}
	return sl.buf[sl.klen:], true
}

// set records raw as key's CFKV record; a tombstone drops key instead.
func (c *latestCache) set(key string, raw []byte) {
	if c == nil {
		return
	}
	sl := &c.slots[xxhash.Sum64String(key)&c.mask]
	n := len(key) + len(raw)
	if len(raw) == 0 || raw[0]&flagTombstone != 0 || n > latestCacheMaxEntryBytes {
		// Not cached: whatever the slot holds of key goes.
		if sl.buf != nil && string(sl.buf[:sl.klen]) == key {
			c.free(sl)
		}
		return
	}
	if cap(sl.buf) < n {
		c.free(sl)
		if c.bytes+int64(n) > c.max {
			return
		}
		sl.buf = make([]byte, 0, n)
		c.bytes += int64(n)
	}
	sl.buf = append(append(sl.buf[:0], key...), raw...)
	sl.klen = len(key)
}

// drop forgets key.
func (c *latestCache) drop(key []byte) {
	if c == nil {
		return
	}
	if sl := c.slot(key); sl.holds(key) {
		c.free(sl)
	}
}

func (c *latestCache) free(sl *latestSlot) {
	c.bytes -= int64(cap(sl.buf))
	sl.buf, sl.klen = nil, 0
}

// reset empties the cache.
func (c *latestCache) reset() {
	if c == nil {
		return
	}
	clear(c.slots)
	c.bytes = 0
}
