package mvcc

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/engine/failpoint"
)

// Compaction, etcd's semantics on this layout.
//
// Compact(C) keeps, for every key, its newest version with mod revision
// <= C and drops every older one; a key whose newest version <= C is a
// tombstone below C disappears entirely. A tombstone exactly at C stays
// (as in etcd, so that a watch starting at C still sees the delete) and
// goes with the next compaction. Reads at revisions >= C see no
// difference while the compactor runs.
//
// Apply only persists the target (mvcc/compact_scheduled) and publishes it;
// the background compactor then walks CFEvents from its cursor up to C in
// batches of whole revisions holding about Config.CompactionBatchLimitRevs
// events (key versions: etcd's revisions in its sense), each one atomic
// batch written under the writer lock (so the "is this tombstone still the
// latest version?" check cannot race a write):
//
//   - every event at r <= C deletes the version it superseded,
//     CFHistory(key, superseded): the key's newest version <= C is r or
//     later;
//   - a DELETE at r < C deletes its tombstone: CFKV(key) when it is still
//     the latest version, else CFHistory(key, r);
//   - the event lists below C are range-deleted, the list at C stays (its
//     tombstones and the watch from C need it), and the cursor is saved.
//
// Worked example: put a@2, put a@3, del a@4, put b@5, put b@6; Compact(5).
// Before: CFKV a=tomb@4 b=put@6; CFHistory a@3 a@2 b@5; events 2..6.
// Walk: @3 deletes hist a@2; @4 deletes hist a@3 and, being below 5, the
// tombstone (the latest: CFKV a); @5 supersedes nothing. After: CFKV b@6;
// CFHistory b@5; events 5, 6; cursor 5. Range at 5 sees b@5 as before.
//
// Because events are processed in revision order and every version is
// deleted by the event that superseded it, a key's older versions are
// always gone before (or in the same batch as) its newer ones, so a reader
// seeking the newest version <= R >= C never lands on a half-compacted
// key. Once the walk ends, engine CompactRange over the touched key ranges
// returns the space: no defragmentation step.
//
// Crash safety: the scheduled target, the cursor and the finished target
// are in CFMeta; every batch is idempotent (deleting a deleted key is a
// no-op), so Open resumes a walk from its cursor.

// maxQueuedCompactions bounds the compaction targets waiting for the
// compactor; beyond it the newest target replaces the last queued one
// (their cached hashes are then skipped).
const maxQueuedCompactions = 64

type compactJob struct {
	rev           int64
	prev          int64 // the previous target; -1 if none
	prevCompleted bool  // the previous target had finished when this was scheduled
}

type compactWaiter struct {
	rev int64
	ch  chan struct{}
}

type compactor struct {
	s     *Store
	wake  chan struct{} // cap 1
	stopc chan struct{}
	wg    sync.WaitGroup
	batch *engine.Batch // used only by the compactor goroutine

	mu struct {
		sync.Mutex
		queue    []compactJob
		waiters  []compactWaiter
		finished int64 // last target fully compacted; -1 if none
		cursor   int64 // event lists below it are gone
		stopped  bool
	}
}

func (c *compactor) start(s *Store, finished, cursor int64) {
	c.s = s
	c.wake = make(chan struct{}, 1)
	c.stopc = make(chan struct{})
	c.batch = s.db.NewBatch()
	c.mu.finished = finished
	c.mu.cursor = cursor
	c.wg.Add(1)
	go c.run()
}

func (c *compactor) finished() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.finished
}

// enqueue schedules job and returns a channel closed when it is done.
func (c *compactor) enqueue(job compactJob) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.mu.queue); n >= maxQueuedCompactions {
		c.mu.queue[n-1].rev = job.rev
		c.mu.queue[n-1].prevCompleted = false
	} else {
		c.mu.queue = append(c.mu.queue, job)
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return c.waitLocked(job.rev)
}

// barrier returns a channel closed once every scheduled job is done.
func (c *compactor) barrier(rev int64) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waitLocked(rev)
}

// REQUIRES: c.mu held.
func (c *compactor) waitLocked(rev int64) <-chan struct{} {
	ch := make(chan struct{})
	if c.mu.finished >= rev || c.mu.stopped {
		close(ch)
		return ch
	}
	c.mu.waiters = append(c.mu.waiters, compactWaiter{rev: rev, ch: ch})
	return ch
}

// stop interrupts the compactor; an unfinished walk resumes on Open.
// Waiters are released (their channels closed).
func (c *compactor) stop() {
	close(c.stopc)
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mu.stopped = true
	for _, w := range c.mu.waiters {
		close(w.ch)
	}
	c.mu.waiters = nil
}

func (c *compactor) run() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		if len(c.mu.queue) == 0 {
			c.mu.Unlock()
			select {
			case <-c.wake:
				continue
			case <-c.stopc:
				return
			}
		}
		job := c.mu.queue[0]
		c.mu.Unlock()

		if err := c.s.runCompaction(job); err != nil {
			if err != errStopped {
				c.s.lg.Error("compaction failed; it resumes on the next open",
					zap.Int64("rev", job.rev), zap.Error(err))
			}
			return
		}
		c.mu.Lock()
		c.mu.queue = c.mu.queue[1:]
		c.mu.finished = job.rev
		kept := c.mu.waiters[:0]
		for _, w := range c.mu.waiters {
			if w.rev <= job.rev {
				close(w.ch)
			} else {
				kept = append(kept, w)
			}
		}
		c.mu.waiters = kept
		c.mu.Unlock()
	}
}

var errStopped = fmt.Errorf("mvcc: compactor stopped")

// Compact applies raft entry index: it schedules a compaction at rev and
// returns a channel closed once it is physically done (or the store
// closes). As etcd: rev <= CompactedRev() fails with ErrCompacted (the
// channel then closes when the current compaction is done), rev > Rev()
// with ErrFutureRev. Reads below rev fail from now on.
func (s *Store) Compact(index uint64, rev int64) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginApplyLocked(index); err != nil {
		return nil, err
	}
	if err := s.flushGroupLocked(); err != nil {
		return nil, err
	}
	st := s.state.Load()
	if rev <= st.compacted {
		s.noteAppliedLocked(index)
		return s.comp.barrier(st.compacted), ErrCompacted
	}
	if rev > st.rev {
		s.noteAppliedLocked(index)
		return nil, ErrFutureRev
	}
	prevCompleted := s.comp.finished() == st.compacted
	b := s.mu.batch
	b.Reset()
	b.Put(engine.CFMeta, metaCompactScheduled, encodeU64(uint64(rev)))
	if err := s.writeAppliedLocked(b, index); err != nil {
		return nil, err
	}
	s.state.Store(&revState{rev: st.rev, compacted: rev})
	return s.comp.enqueue(compactJob{rev: rev, prev: st.compacted, prevCompleted: prevCompleted}), nil
}

// runCompaction hashes (when etcd would) and then compacts up to job.rev.
func (s *Store) runCompaction(job compactJob) error {
	start := time.Now()
	if job.prevCompleted {
		h, err := s.hashCompaction(job.prev, job.rev, s.newPacer(0))
		if err != nil {
			return err
		}
		s.hashes.store(h)
	}
	touched, err := s.compactWalk(job.rev)
	if err != nil {
		return err
	}
	walked := time.Since(start)
	// Return the space: the deletes are tombstones until RocksDB compacts
	// the files holding them.
	if touched.histLo != nil {
		if err := s.db.CompactRange(engine.CFHistory, touched.histLo, append(touched.histHi, 0)); err != nil {
			return err
		}
	}
	if touched.kvLo != nil {
		if err := s.db.CompactRange(engine.CFKV, touched.kvLo, append(touched.kvHi, 0)); err != nil {
			return err
		}
	}
	if err := s.db.CompactRange(engine.CFEvents, nil, eventKey(job.rev)); err != nil {
		return err
	}
	s.lg.Info("finished compaction", zap.Int64("rev", job.rev),
		zap.Duration("walk", walked), zap.Duration("total", time.Since(start)))
	return nil
}

// keyRange tracks the smallest and largest keys deleted.
type touchedRanges struct {
	histLo, histHi, kvLo, kvHi []byte
}

func widen(lo, hi *[]byte, k []byte) {
	if *lo == nil || bytes.Compare(k, *lo) < 0 {
		*lo = bytes.Clone(k)
	}
	if *hi == nil || bytes.Compare(k, *hi) > 0 {
		*hi = bytes.Clone(k)
	}
}

// compactWalk runs the batched walk of CFEvents up to target.
func (s *Store) compactWalk(target int64) (touchedRanges, error) {
	var t touchedRanges
	p := s.newPacer(s.cfg.CompactionBatchInterval)
	for {
		start := time.Now()
		done, err := s.compactBatch(target, &t)
		if err != nil || done {
			return t, err
		}
		busy := time.Since(start)
		if failpoint.Enabled {
			if err := failpoint.Inject(failpoint.CompactMid); err != nil {
				return t, err
			}
		}
		if err := p.pause(busy); err != nil {
			return t, err
		}
	}
}

// pacer spreads the compactor's work so that it takes at most
// CompactionBusyPercent of the time while the store serves requests:
// compactWalk pauses after each batch (pause), the compaction's hash after
// each hashPaceQuantum of work (tick), for compactionPause of the work.
// When nothing was applied or read since the previous pause began (the
// activity count did not move), the store is idle and the pause is
// idlePause: the walk's batches keep CompactionBatchInterval between them,
// as etcd's do; the hash, which holds no lock and is not part of etcd's
// walk, goes on at once. An idle member's compaction of millions of
// versions then takes a fraction of the time a paced one would. A nil
// pacer never pauses.
type pacer struct {
	start     time.Time
	interval  time.Duration
	idlePause time.Duration
	percent   int
	stopc     <-chan struct{}
	// activity counts the requests the store served so far (nil: always
	// busy); seen is its value when the previous pause began.
	activity func() uint64
	seen     uint64
}

// hashPaceQuantum is the work between two pauses of a paced walk, about
// what a batch of 1,000 key versions of the compaction's walk takes.
const hashPaceQuantum = 5 * time.Millisecond

// newPacer returns the pacer of one walk or hash, pausing idlePause
// between quanta of work while the store is idle.
func (s *Store) newPacer(idlePause time.Duration) *pacer {
	p := &pacer{start: time.Now(), interval: s.cfg.CompactionBatchInterval, idlePause: idlePause,
		percent: s.cfg.CompactionBusyPercent, stopc: s.comp.stopc, activity: s.activity}
	p.seen = p.activity()
	return p
}

// activity counts the entries applied and the reads begun: it moves
// whenever the store serves a request.
func (s *Store) activity() uint64 { return s.applied.Load() + s.reads.Load() }

// tick pauses when a quantum of work has passed since the last pause;
// errStopped if the compactor stops meanwhile.
func (p *pacer) tick() error {
	if p == nil {
		return nil
	}
	busy := time.Since(p.start)
	if busy < hashPaceQuantum {
		return nil
	}
	if err := p.pause(busy); err != nil {
		return err
	}
	p.start = time.Now()
	return nil
}

// pause sleeps pauseFor(busy): compactionPause of busy, or idlePause when
// the store was idle since the previous pause began; errStopped if the
// compactor stops meanwhile.
func (p *pacer) pause(busy time.Duration) error {
	d := p.pauseFor(busy)
	if d <= 0 {
		select {
		case <-p.stopc:
			return errStopped
		default:
			return nil
		}
	}
	select {
	case <-p.stopc:
		return errStopped
	case <-time.After(d):
		return nil
	}
}

// pauseFor is the pause after busy of work: compactionPause, or idlePause
// when the activity count has not moved since the previous call.
func (p *pacer) pauseFor(busy time.Duration) time.Duration {
	if p.activity != nil {
		a := p.activity()
		if a == p.seen {
			return p.idlePause
		}
		p.seen = a
	}
	return compactionPause(busy, p.interval, p.percent)
}

// compactionPause is the pause after a compaction batch that took busy:
// at least interval, and long enough that batches take at most
// busyPercent of the time, so that on a busy core a long compaction slows
// writers by about that share instead of by as much as it can take.
func compactionPause(busy, interval time.Duration, busyPercent int) time.Duration {
	return max(interval, busy*time.Duration(100-busyPercent)/time.Duration(busyPercent))
}

// compactBatch processes the revisions from the cursor until it has
// processed CompactionBatchLimitRevs events (key versions, as etcd counts
// its compaction batch: a txn of 128 puts is 128 of them) and reports
// whether the walk reached target. A batch ends on a revision boundary, so
// one revision of more events than the limit (a txn of more ops) is a
// batch of its own.
func (s *Store) compactBatch(target int64, t *touchedRanges) (done bool, err error) {
	select {
	case <-s.comp.stopc:
		return false, errStopped
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushGroupLocked(); err != nil {
		return false, err
	}
	s.comp.mu.Lock()
	cursor := s.comp.mu.cursor
	s.comp.mu.Unlock()

	it, err := s.db.NewIterator(engine.CFEvents, engine.IterOptions{
		Lower: eventKey(cursor), Upper: eventKey(target + 1), NoFillCache: true})
	if err != nil {
		return false, err
	}
	defer it.Close()
	b := s.comp.batch
	b.Reset()
	next := target // the new cursor if the walk ends in this batch
	done = true
	versions := 0
	var hk []byte
	for ok := it.First(); ok; ok = it.Next() {
		rev, err := decodeEventKey(it.Key())
		if err != nil {
			return false, err
		}
		if versions >= s.cfg.CompactionBatchLimitRevs {
			next, done = rev, false
			break
		}
		evs, err := decodeEvents(it.Value(), rev)
		if err != nil {
			return false, fmt.Errorf("mvcc: compact: events at %d: %w", rev, err)
		}
		versions += max(len(evs), 1)
		for i := range evs {
			e := &evs[i]
			if e.superseded != 0 {
				hk = appendHistoryKey(hk[:0], e.key, e.superseded)
				b.Delete(engine.CFHistory, hk)
				widen(&t.histLo, &t.histHi, hk)
			}
			if !e.del || e.inline != nil || rev >= target {
				continue
			}
			v, ok, err := s.db.Get(engine.CFKV, e.key)
			if err != nil {
				return false, err
			}
			latest := false
			if ok {
				rec, err := decodeRecord(v)
				if err != nil {
					return false, fmt.Errorf("mvcc: compact: kv %q: %w", e.key, err)
				}
				latest = rec.mod.Main == rev
				if latest && !rec.tombstone {
					s.lg.Panic("delete event names a live version", zap.ByteString("key", e.key), zap.Int64("rev", rev))
				}
			}
			if latest {
				b.Delete(engine.CFKV, e.key)
				widen(&t.kvLo, &t.kvHi, e.key)
			} else {
				hk = appendHistoryKey(hk[:0], e.key, rev)
				b.Delete(engine.CFHistory, hk)
				widen(&t.histLo, &t.histHi, hk)
			}
		}
	}
	if err := it.Error(); err != nil {
		return false, err
	}
	if next > cursor {
		b.DeleteRange(engine.CFEvents, eventKey(cursor), eventKey(next))
	}
	b.Put(engine.CFMeta, metaCompactCursor, encodeU64(uint64(next)))
	if done {
		b.Put(engine.CFMeta, metaCompactFinished, encodeU64(uint64(target)))
	}
	if err := s.db.Write(b, false); err != nil {
		return false, fmt.Errorf("mvcc: compact: write: %w", err)
	}
	s.comp.mu.Lock()
	s.comp.mu.cursor = next
	s.comp.mu.Unlock()
	return done, nil
}
