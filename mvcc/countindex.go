package mvcc

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/metastore/metastore/engine"
)

// The count index makes the count of a large range cheap. etcd returns
// with every range the number of keys in it, however small its limit, and
// Kubernetes reads that count with every page of a list, so without help a
// 100-key page of a prefix of 10M keys walks 10M keys.
//
// The index partitions the key space into buckets of about
// Config.CountIndexBucketKeys live keys and keeps, in memory, how many keys
// are live in each at one revision (rev). A count over [from, end) at
// revision R then is:
//
//	walk [from, lo)  +  sum of the buckets wholly inside, at rev
//	                 +  correction from rev to R
//	                 +  walk [hi, end)
//
// where [lo, hi) is the span of the whole buckets inside the range. The
// two walks are the ordinary counting scan at R, over at most about two
// buckets' keys. The correction reads the event lists of the revisions
// between R and rev: for each key in [lo, hi) they touch, the first event
// says whether it was live before (a superseded revision is recorded
// exactly when the version before was a put), the last whether it is live
// after. A read at the current revision usually has nothing to correct;
// the continuation pages of a Kubernetes list, which read at the first
// page's revision, correct by the writes since. When the correction would
// read more events than walking the span costs, the read walks instead.
//
// Memory: one boundary key and one counter per bucket (10M keys in
// buckets of 1,024: about 10k buckets, under 1 MiB). The index is built by
// one walk of CFKV when the store opens or restores a snapshot.
//
// Writers: each write txn records +1 for a key it creates (no live version
// before) and -1 for a live key it deletes, against the bucket the key
// falls in; the deltas are applied once the txn's batch is written and
// before its revision is published (in a group commit, when the group is
// written). Overwrites change nothing. A bucket that grows past twice the
// target is split by a walk of its keys; one that shrinks below a quarter
// is merged into a neighbour. Compaction never changes which keys are
// live, only removes tombstones, so it leaves the index alone.
//
// Locks: the bucket layout (bounds) changes only under Store.mu, so a
// writer holding it reads bounds freely; counts and layout change under
// countIndex.mu, which readers hold while they sum.
type countIndex struct {
	target int // live keys a bucket aims at
	// minCorrection is the number of events a correction may always
	// read (countIndexMinCorrection; tests raise it).
	minCorrection int64

	// rev is the revision the counts are at: every write up to it is
	// counted, none after. It moves without mu when a write changed no
	// count (the counts are then right at both revisions).
	rev atomic.Int64

	mu sync.RWMutex
	// bounds[i] is the lowest key of bucket i; bounds[0] is empty, so the
	// buckets cover every key; the last bucket has no upper bound.
	bounds [][]byte
	live   []int64
}

// countDelta is a change of one bucket's live count by a write txn.
type countDelta struct {
	bucket int
	d      int64
}

// Default and bounds of Config.CountIndexBucketKeys.
const (
	DefaultCountIndexBucketKeys = 1024
	// countIndexMinCorrection is the number of events a correction may
	// always read, however small the span it corrects.
	countIndexMinCorrection = 256
	// countIndexMaxCorrectionEvents bounds the events a correction reads
	// (and the distinct keys it tracks: up to ~100 bytes each), whatever
	// the span: past it the read walks.
	countIndexMaxCorrectionEvents = 256 << 10
)

func newCountIndex(target int) *countIndex {
	return &countIndex{target: target, minCorrection: countIndexMinCorrection}
}

// bucketOf returns the bucket holding key. REQUIRES: Store.mu or ci.mu.
func (ci *countIndex) bucketOf(key []byte) int {
	i, found := slices.BinarySearchFunc(ci.bounds, key, bytes.Compare)
	if found {
		return i
	}
	return i - 1 // bounds[0] is the empty key: i >= 1
}

// build replaces the index with one walk of CFKV at revision rev.
// REQUIRES: Store.mu held and no pending group: the engine is exactly the
// state at rev.
func (ci *countIndex) build(db *engine.DB, rev int64) error {
	bounds, live, err := ci.pieces(db, nil, nil)
	if err != nil {
		return err
	}
	bounds[0] = []byte{}
	ci.mu.Lock()
	ci.bounds, ci.live = bounds, live
	ci.rev.Store(rev)
	ci.mu.Unlock()
	return nil
}

// pieces walks CFKV's [lower, upper) (nil: unbounded) and cuts it into
// pieces of target live keys, the last one longer by less than a quarter
// of the target rather than a short piece of its own. bounds[0] is lower;
// each further bound is the first key of its piece. The walk classifies
// keys in C, up to the next cut per cgo call.
func (ci *countIndex) pieces(db *engine.DB, lower, upper []byte) (bounds [][]byte, live []int64, err error) {
	it, err := db.NewIterator(engine.CFKV, engine.IterOptions{Lower: lower, Upper: upper, NoFillCache: true})
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	target := int64(ci.target)
	bounds, live = [][]byte{lower}, []int64{0}
	for valid := it.First(); valid; {
		last := len(live) - 1
		// At most target-live[last] keys: the run ends on the cut when
		// they are all live, before it otherwise.
		run := it.CountRun(&recordHeaderRule, math.MaxInt64, nil, int(target-live[last]))
		live[last] += int64(run.Live)
		switch run.Stop {
		case engine.RunExhausted:
			valid = false
		case engine.RunMaxKeys:
			valid = it.Valid()
			if valid && live[last] == target {
				bounds = append(bounds, bytes.Clone(it.Key()))
				live = append(live, 0)
			}
		default: // RunNewer cannot happen at MaxInt64
			var h record
			_, err := decodeRecordHeader(it.ValuePrefix(maxRecordHeaderBytes), &h)
			return nil, nil, fmt.Errorf("mvcc: count index: kv %q (%s): %w", it.Key(), run.Stop, err)
		}
	}
	if err := it.Error(); err != nil {
		return nil, nil, err
	}
	if n := len(live); n > 1 && live[n-1] < ci.mergeBelow() {
		live[n-2] += live[n-1]
		live, bounds = live[:n-1], bounds[:n-1]
	}
	return bounds, live, nil
}

// apply adds deltas, recorded against the current layout, and moves the
// index to rev; then it splits and merges the buckets that left their
// bounds. A nil index (none kept) does nothing. REQUIRES: Store.mu held,
// the writes up to rev in the engine and none after.
func (ci *countIndex) apply(db *engine.DB, deltas []countDelta, rev int64) error {
	if ci == nil {
		return nil
	}
	if len(deltas) == 0 {
		ci.rev.Store(rev)
		return nil
	}
	unbalanced := false
	ci.mu.Lock()
	for _, d := range deltas {
		n := ci.live[d.bucket] + d.d
		ci.live[d.bucket] = n
		if n > 2*int64(ci.target) || n < ci.mergeBelow() {
			unbalanced = true
		}
	}
	ci.rev.Store(rev)
	ci.mu.Unlock()
	if unbalanced {
		return ci.rebalance(db)
	}
	return nil
}

func (ci *countIndex) mergeBelow() int64 { return max(int64(ci.target)/4, 1) }

// rebalance splits every bucket above twice the target and merges every
// one below a quarter of it into its smaller neighbour when the two fit in
// twice the target. REQUIRES: as apply.
func (ci *countIndex) rebalance(db *engine.DB) error {
	for i := 0; i < len(ci.live); i++ {
		switch n := ci.live[i]; {
		case n > 2*int64(ci.target):
			if err := ci.split(db, i); err != nil {
				return err
			}
		case n < ci.mergeBelow() && len(ci.live) > 1:
			j := i + 1
			if j == len(ci.live) || (i > 0 && ci.live[i-1] < ci.live[j]) {
				j = i - 1
			}
			if ci.live[i]+ci.live[j] > 2*int64(ci.target) {
				continue
			}
			lo := min(i, j)
			ci.mu.Lock()
			ci.live[lo] += ci.live[lo+1]
			ci.live = append(ci.live[:lo+1], ci.live[lo+2:]...)
			ci.bounds = append(ci.bounds[:lo+1], ci.bounds[lo+2:]...)
			ci.mu.Unlock()
			i = lo - 1 // look at the merged bucket again
			if i < -1 {
				i = -1
			}
		}
	}
	return nil
}

// split cuts bucket i into buckets of target live keys by walking its
// keys. The walk's counts replace the bucket's. REQUIRES: as apply.
func (ci *countIndex) split(db *engine.DB, i int) error {
	var upper []byte
	if i+1 < len(ci.bounds) {
		upper = ci.bounds[i+1]
	}
	bounds, live, err := ci.pieces(db, ci.bounds[i], upper)
	if err != nil {
		return err
	}
	ci.mu.Lock()
	ci.live = append(ci.live[:i], append(live, ci.live[i+1:]...)...)
	ci.bounds = append(ci.bounds[:i], append(bounds, ci.bounds[i+1:]...)...)
	ci.mu.Unlock()
	return nil
}

// span returns the whole buckets inside [from, end) (end empty: no upper
// bound): their lowest key lo, the key hi where they end (nil: no upper
// bound), their live count and the revision it is at. ok is false when no
// whole bucket is inside.
func (ci *countIndex) span(from, end []byte) (lo, hi []byte, sum, rev int64, ok bool) {
	ci.mu.RLock()
	defer ci.mu.RUnlock()
	n := len(ci.bounds)
	first := ci.bucketOf(from)
	if !bytes.Equal(ci.bounds[first], from) {
		first++
	}
	last := n // buckets [first, last) are inside
	if len(end) > 0 {
		last = ci.bucketOf(end)
	}
	if first >= last {
		return nil, nil, 0, 0, false
	}
	for i := first; i < last; i++ {
		sum += ci.live[i]
	}
	lo = ci.bounds[first] // bounds are never modified in place: no copy
	if last < n {
		hi = ci.bounds[last]
	}
	return lo, hi, sum, ci.rev.Load(), true
}

// buckets returns a copy of the layout and counts (for tests and the
// store's open log line).
func (ci *countIndex) buckets() (bounds [][]byte, live []int64, rev int64) {
	ci.mu.RLock()
	defer ci.mu.RUnlock()
	return append([][]byte(nil), ci.bounds...), append([]int64(nil), ci.live...), ci.rev.Load()
}

// countRest returns the number of keys in [from, end) that exist at the
// reader's revision, using the count index; ok is false when the index
// would not save work (the caller walks). The reader must have no
// pending writes.
func (r *reader) countRest(ctx context.Context, from, end []byte) (count int, ok bool, err error) {
	ci := r.cidx
	lo, hi, sum, irev, ok := ci.span(from, end)
	if !ok {
		return 0, false, nil
	}
	if irev != r.rev {
		budget := min(max(sum/4, ci.minCorrection), countIndexMaxCorrectionEvents)
		adj, ok, err := r.countCorrection(lo, hi, min(irev, r.rev), max(irev, r.rev), budget)
		if err != nil || !ok {
			return 0, false, err
		}
		if irev > r.rev {
			adj = -adj
		}
		sum += adj
	}
	// The two edges, walked at the reader's revision (without the index).
	r.cidx = nil
	defer func() { r.cidx = ci }()
	left := 0
	if !bytes.Equal(from, lo) { // else lo may be the empty lowest bound
		if left, err = r.scan(ctx, from, lo, 0, nil); err != nil {
			return 0, false, err
		}
	}
	right := 0
	if hi != nil {
		if right, err = r.scan(ctx, hi, end, 0, nil); err != nil {
			return 0, false, err
		}
	}
	return left + int(sum) + right, true, nil
}

// countCorrection returns how many more keys of [lo, hi) (hi nil: no upper
// bound) are live at revision to than at from, from the event lists of
// the revisions in (from, to]; ok is false when that takes more than
// budget events. The events are read from the live engine: the caller's
// re-check of the compaction revision (usedHistory) catches a compaction
// that removed some meanwhile.
func (r *reader) countCorrection(lo, hi []byte, from, to, budget int64) (adj int64, ok bool, err error) {
	r.usedHistory = true
	it, err := r.src.NewIterator(engine.CFEvents, engine.IterOptions{
		Lower: eventKey(from + 1), Upper: eventKey(to + 1)})
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	type change struct{ before, after bool }
	keys := make(map[string]*change)
	seen := int64(0)
	for valid := it.First(); valid; valid = it.Next() {
		rev, err := decodeEventKey(it.Key())
		if err != nil {
			return 0, false, err
		}
		list, err := decodeEvents(it.Value(), rev)
		if err != nil {
			return 0, false, fmt.Errorf("mvcc: events at %d: %w", rev, err)
		}
		if seen += int64(len(list)); seen > budget {
			return 0, false, nil
		}
		for i := range list {
			e := &list[i]
			if bytes.Compare(e.key, lo) < 0 || (hi != nil && bytes.Compare(e.key, hi) >= 0) {
				continue
			}
			c, found := keys[string(e.key)]
			if !found {
				c = &change{before: e.superseded != 0}
				keys[string(e.key)] = c
			}
			c.after = !e.del
		}
	}
	if err := it.Error(); err != nil {
		return 0, false, err
	}
	for _, c := range keys {
		switch {
		case c.after && !c.before:
			adj++
		case c.before && !c.after:
			adj--
		}
	}
	return adj, true, nil
}
