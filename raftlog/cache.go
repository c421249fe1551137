package raftlog

import (
	"sync/atomic"

	"go.etcd.io/raft/v3/raftpb"
)

// entryCache holds the newest entries of the log in memory, bounded in
// bytes rather than in entries: etcd kept a fixed 10,000 entries, which is
// gigabytes once values are large (etcd-io/etcd#17098). Its entries are a
// contiguous suffix-or-window [first, last] of the log; when the bytes held
// exceed the budget the oldest are evicted first, and reads of evicted
// entries fall back to the engine.
//
// Entries in the cache are immutable copies owned by the cache: their Data
// never aliases a caller's slice, and slices handed out share Data with the
// cache only under raft's contract that nobody mutates entries.
//
// An entry is charged its encoded size (raftpb.Entry.Size), the unit raft
// itself uses for MaxSizePerMsg and MaxCommittedSizePerReady.
//
// Not safe for concurrent use except bytes(); Storage guards it.
type entryCache struct {
	budgetBytes int64
	ents        []raftpb.Entry
	// heldBytes is written under Storage.mu and read without it by metrics.
	heldBytes atomic.Int64
}

func newEntryCache(budgetBytes int64) *entryCache {
	return &entryCache{budgetBytes: budgetBytes}
}

// bytes returns the encoded bytes of the cached entries.
func (c *entryCache) bytes() int64 { return c.heldBytes.Load() }

func (c *entryCache) len() int { return len(c.ents) }

// first returns the index of the oldest cached entry, 0 when empty.
func (c *entryCache) first() uint64 {
	if len(c.ents) == 0 {
		return 0
	}
	return c.ents[0].Index
}

// append adds entries that were just written to the log, ents[0].Index
// being where the write started. Cached entries at or after that index are
// replaced (a conflicting tail); if the write does not continue or overlap
// the cached window, the cache restarts from ents[0].
func (c *entryCache) append(ents []raftpb.Entry) {
	if len(ents) == 0 {
		return
	}
	start := ents[0].Index
	switch {
	case len(c.ents) == 0:
	case start >= c.ents[0].Index && start <= c.ents[len(c.ents)-1].Index+1:
		c.truncateFrom(start)
	default:
		c.clear()
	}
	held := c.heldBytes.Load()
	for _, e := range ents {
		held += int64(e.Size())
	}
	c.ents = append(c.ents, ents...)
	// Evict the oldest until the cache fits, before publishing the bytes
	// held: a concurrent bytes() never sees the cache over budget.
	n := 0
	for n < len(c.ents) && held > c.budgetBytes {
		held -= int64(c.ents[n].Size())
		n++
	}
	c.dropFront(n, held)
}

// dropFront removes the n oldest entries, leaving held bytes.
func (c *entryCache) dropFront(n int, held int64) {
	c.heldBytes.Store(held)
	if n == 0 {
		return
	}
	// Clear the dropped headers so their Data can be collected, and copy
	// the survivors once the dead prefix outweighs them so the backing
	// array does not pin memory.
	clear(c.ents[:n])
	c.ents = c.ents[n:]
	if len(c.ents) == 0 {
		c.ents = nil
	} else if cap(c.ents) > 2*len(c.ents)+64 {
		c.ents = append([]raftpb.Entry(nil), c.ents...)
	}
}

// truncateFrom drops cached entries with index >= index.
func (c *entryCache) truncateFrom(index uint64) {
	if len(c.ents) == 0 || index > c.ents[len(c.ents)-1].Index {
		return
	}
	if index <= c.ents[0].Index {
		c.clear()
		return
	}
	k := int(index - c.ents[0].Index)
	var dropped int64
	for _, e := range c.ents[k:] {
		dropped += int64(e.Size())
	}
	// Entries handed out may still reference the old slots: allocate a new
	// backing array rather than letting a later append overwrite them.
	c.ents = append([]raftpb.Entry(nil), c.ents[:k]...)
	c.heldBytes.Add(-dropped)
}

// compactTo drops cached entries with index <= index.
func (c *entryCache) compactTo(index uint64) {
	if len(c.ents) == 0 || index < c.ents[0].Index {
		return
	}
	n := len(c.ents)
	if index < c.ents[len(c.ents)-1].Index {
		n = int(index - c.ents[0].Index + 1)
	}
	held := c.heldBytes.Load()
	for _, e := range c.ents[:n] {
		held -= int64(e.Size())
	}
	c.dropFront(n, held)
}

func (c *entryCache) clear() {
	c.ents = nil
	c.heldBytes.Store(0)
}

// slice returns the cached entries [lo, hi) as a view (not a copy).
// REQUIRES: first() <= lo <= hi <= last+1.
func (c *entryCache) slice(lo, hi uint64) []raftpb.Entry {
	off := c.ents[0].Index
	return c.ents[lo-off : hi-off]
}
