package mvcc

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/engine/failpoint"
)

// revState is the published pair (current revision, compacted revision).
// Readers load both with one atomic pointer load, so they never see a
// compaction revision newer than the current revision they read at.
type revState struct {
	rev       int64 // revision of the last committed write
	compacted int64 // scheduled compaction revision; -1 before any
}

// Store is etcd's MVCC key-value store on the engine. See the package doc
// for the contract.
type Store struct {
	db  *engine.DB
	cfg Config
	lg  *zap.Logger

	// state is replaced (never mutated) by the apply goroutine after each
	// batch that changes it is written.
	state atomic.Pointer[revState]
	// applied is the last applied raft index. It may run ahead of the
	// persisted one by entries that changed nothing (see noteAppliedLocked).
	applied atomic.Uint64
	closed  atomic.Bool
	// reads counts the reads begun (readGen): with applied, what tells
	// the compactor's pacer whether the store is serving requests.
	reads atomic.Uint64
	// restoreGen is odd while Restore replaces the state; readers that see
	// it odd, or changed across their read, fail with ErrRestoring.
	restoreGen atomic.Uint64

	// mu serializes the apply goroutine with the compactor's batches: both
	// read-modify-write CFKV.
	mu struct {
		sync.Mutex
		// batch is reused by every apply.
		batch *engine.Batch
		// tx is the write txn, reused by every apply (newTxnLocked).
		tx writeTxn
		// appliedDirty is set when applied is ahead of the persisted index.
		appliedDirty bool
		// group is the pending group commit (group.go).
		group group
	}

	// cidx counts live keys per bucket of the key space; nil when
	// Config.CountIndexBucketKeys < 0.
	cidx *countIndex
	// lc caches the latest records the writer wrote; nil when
	// Config.LatestCacheBytes < 0. REQUIRES: mu held.
	lc *latestCache

	leases leaseTable
	subs   subscribers
	comp   compactor
	hashes hashCache
}

// Open opens the store kept in db: it recovers the current revision, the
// applied index, the compaction state and the leases, and resumes an
// unfinished compaction in the background. db stays owned by the caller.
func Open(db *engine.DB, cfg Config, lg *zap.Logger) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mvcc: invalid config: %w", err)
	}
	if lg == nil {
		lg = zap.NewNop()
	}
	s := &Store{db: db, cfg: cfg, lg: lg}
	s.mu.batch = db.NewBatch()
	if cfg.CountIndexBucketKeys > 0 {
		s.cidx = newCountIndex(cfg.CountIndexBucketKeys)
	}
	s.lc = newLatestCache(cfg.LatestCacheBytes)

	if err := s.load(); err != nil {
		return nil, err
	}
	st := s.state.Load()
	s.subs.init(st.rev)
	lg.Info("mvcc store opened", zap.Int64("rev", st.rev), zap.Uint64("applied-index", s.applied.Load()),
		zap.Int64("compacted", st.compacted), zap.Int("leases", s.leases.count()))
	return s, nil
}

// load reads the store's state from the engine (revision, applied index,
// compaction progress, leases), starts the compactor and resumes an
// unfinished compaction. Subscriptions are the caller's business.
func (s *Store) load() error {
	db, lg := s.db, s.lg
	s.lc.reset()
	applied, _, err := s.metaGet(metaAppliedIndex)
	if err != nil {
		return err
	}
	rev, err := s.loadRev()
	if err != nil {
		return err
	}
	sched, ok, err := s.metaGet(metaCompactScheduled)
	if err != nil {
		return err
	}
	if !ok {
		sched = ^uint64(0) // -1: never compacted
	}
	finished, ok, err := s.metaGet(metaCompactFinished)
	if err != nil {
		return err
	}
	if !ok {
		finished = ^uint64(0)
	}
	cursor, _, err := s.metaGet(metaCompactCursor)
	if err != nil {
		return err
	}
	if int64(sched) > int64(rev) {
		return corruptf("scheduled compaction %d above current revision %d", int64(sched), rev)
	}
	// The other bounds of the persisted state; a value outside them is a
	// damaged record (FuzzOpenMeta found a current revision of 2^63 opening
	// as a negative revision, and a scheduled compaction of -2 as a negative
	// compacted revision).
	never := ^uint64(0)
	switch {
	case int64(rev) < 1:
		return corruptf("current revision %d", int64(rev))
	case sched != never && int64(sched) < 0:
		return corruptf("scheduled compaction %d", int64(sched))
	case finished != never && (sched == never || int64(finished) < 0 || finished > sched):
		return corruptf("finished compaction %d, scheduled %d", int64(finished), int64(sched))
	case int64(cursor) < 0 || cursor > rev:
		return corruptf("compaction cursor %d, current revision %d", int64(cursor), rev)
	}
	s.applied.Store(applied)
	s.state.Store(&revState{rev: int64(rev), compacted: int64(sched)})
	if err := s.leases.load(db); err != nil {
		return err
	}
	if s.cidx != nil {
		start := time.Now()
		if err := s.cidx.build(db, int64(rev)); err != nil {
			return err
		}
		_, live, _ := s.cidx.buckets()
		var keys int64
		for _, n := range live {
			keys += n
		}
		lg.Info("count index built", zap.Int("buckets", len(live)), zap.Int64("live-keys", keys),
			zap.Duration("took", time.Since(start)))
	}
	s.comp.start(s, int64(finished), int64(cursor))
	if int64(finished) < int64(sched) {
		lg.Info("resuming interrupted compaction",
			zap.Int64("scheduled", int64(sched)), zap.Int64("finished", int64(finished)),
			zap.Int64("cursor", int64(cursor)))
		s.comp.enqueue(compactJob{rev: int64(sched), prev: int64(finished), prevCompleted: false})
	}
	return nil
}

// loadRev returns the current revision: the key of the last event list.
// Every revision has one, written in its batch, and compaction keeps the
// list at its target, so the newest list is never deleted. Stores written
// before the revision stopped being persisted separately may hold it in
// mvcc/current_rev: the larger of the two wins. An empty store is at
// revision 1, as etcd's.
func (s *Store) loadRev() (uint64, error) {
	rev, ok, err := s.metaGet(metaCurrentRev)
	if err != nil {
		return 0, err
	}
	if !ok {
		rev = 1
	}
	it, err := s.db.NewIterator(engine.CFEvents, engine.IterOptions{})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if it.Last() {
		last, err := decodeEventKey(it.Key())
		if err != nil {
			return 0, err
		}
		rev = max(rev, uint64(last))
	}
	return rev, it.Error()
}

func (s *Store) metaGet(key []byte) (uint64, bool, error) {
	v, ok, err := s.db.Get(engine.CFMeta, key)
	if err != nil || !ok {
		return 0, false, err
	}
	n, err := decodeU64(v)
	if err != nil {
		return 0, false, fmt.Errorf("mvcc: meta %s: %w", key, err)
	}
	return n, true, nil
}

// Close stops the compactor (an unfinished compaction resumes on the next
// Open), closes every subscription and persists an applied index that ran
// ahead of the last batch. It does not close the engine.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return ErrClosed
	}
	s.comp.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushGroupLocked(); err != nil {
		s.subs.closeAll()
		return err
	}
	s.subs.closeAll()
	if s.mu.appliedDirty {
		b := s.mu.batch
		b.Reset()
		b.Put(engine.CFMeta, metaAppliedIndex, encodeU64(s.applied.Load()))
		if err := s.db.Write(b, false); err != nil {
			return err
		}
		s.mu.appliedDirty = false
	}
	return nil
}

// Rev returns the current revision: that of the last committed write.
func (s *Store) Rev() int64 { return s.state.Load().rev }

// CompactedRev returns the compaction revision: reads below it fail with
// ErrCompacted. It is -1 before the first compaction, as in etcd.
func (s *Store) CompactedRev() int64 { return s.state.Load().compacted }

// AppliedIndex returns the last raft index applied.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// beginApplyLocked checks an apply of raft entry index.
// REQUIRES: s.mu held.
func (s *Store) beginApplyLocked(index uint64) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if index <= s.applied.Load() {
		return ErrAlreadyApplied
	}
	return nil
}

// noteAppliedLocked records index as applied without writing anything: the
// entry changed nothing, so replaying it after a crash is harmless; the
// next batch persists it.
// REQUIRES: s.mu held.
func (s *Store) noteAppliedLocked(index uint64) {
	s.applied.Store(index)
	s.mu.appliedDirty = true
}

// writeAppliedLocked adds the applied index to b, writes b and records
// index as applied.
// REQUIRES: s.mu held.
func (s *Store) writeAppliedLocked(b *engine.Batch, index uint64) error {
	var v [8]byte // the batch copies it
	binary.BigEndian.PutUint64(v[:], index)
	b.Put(engine.CFMeta, metaAppliedIndex, v[:])
	if failpoint.Enabled {
		if err := failpoint.Inject(failpoint.ApplyWrite); err != nil {
			b.Reset()
			return fmt.Errorf("%w: %w", ErrWriteFailed, err)
		}
	}
	if err := s.db.Write(b, false); err != nil {
		// The engine's state is unknown: the caller must stop, as after a
		// failed fsync (see the package doc).
		return fmt.Errorf("%w: %w", ErrWriteFailed, err)
	}
	s.applied.Store(index)
	s.mu.appliedDirty = false
	return nil
}

// ApplyMeta commits fn's writes together with the applied index in one
// atomic batch, for replicated state kept beside the key space (auth,
// membership). It creates no revision. A nil fn only records index as
// applied (an entry with no effect). If fn fails nothing is written and
// its error is returned; the index still counts as applied.
func (s *Store) ApplyMeta(index uint64, fn func(b *engine.Batch) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.beginApplyLocked(index); err != nil {
		return err
	}
	if fn == nil {
		s.noteAppliedLocked(index)
		return nil
	}
	if err := s.flushGroupLocked(); err != nil {
		return err
	}
	b := s.mu.batch
	b.Reset()
	if err := fn(b); err != nil {
		b.Reset()
		s.noteAppliedLocked(index)
		return err
	}
	return s.writeAppliedLocked(b, index)
}
