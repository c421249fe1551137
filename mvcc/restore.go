package mvcc

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
)

// ErrRestoring is returned to readers while Restore replaces the state.
var ErrRestoring = errors.New("mvcc: restoring a snapshot")

// Restore replaces the store's whole state with what install writes into
// the engine (a snapshot received from the raft leader): the compactor
// stops, writers are excluded, readers fail fast with ErrRestoring, and
// once install returns the store reloads its revision, applied index,
// compaction progress and leases from the engine. Live subscriptions are
// marked lagging from the first revision they have not seen, so their
// owners catch up from the restored event feed (or learn that it was
// compacted). install runs with the writer lock held; it must not call
// the store.
func (s *Store) Restore(install func() error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.comp.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushGroupLocked(); err != nil {
		return err
	}
	s.restoreGen.Add(1)
	defer s.restoreGen.Add(1)
	old := s.state.Load()
	if err := install(); err != nil {
		return fmt.Errorf("mvcc: install snapshot: %w", err)
	}
	s.comp = compactor{}
	s.hashes = hashCache{}
	s.mu.appliedDirty = false
	if err := s.load(); err != nil {
		return err
	}
	st := s.state.Load()
	s.subs.restart(old.rev, st.rev)
	s.lg.Info("mvcc store restored", zap.Int64("old-rev", old.rev), zap.Int64("rev", st.rev),
		zap.Int64("compacted", st.compacted), zap.Uint64("applied-index", s.applied.Load()))
	return nil
}

// readGen returns the restore generation a reader starts at, or
// ErrRestoring while a restore runs.
func (s *Store) readGen() (uint64, error) {
	s.reads.Add(1)
	g := s.restoreGen.Load()
	if g&1 == 1 {
		return 0, ErrRestoring
	}
	return g, nil
}

// checkReadGen fails a read that overlapped a restore.
func (s *Store) checkReadGen(g uint64) error {
	if s.restoreGen.Load() != g {
		return ErrRestoring
	}
	return nil
}

// restart points the subscriptions at a restored state: each becomes
// lagging from the first revision after oldRev it has not received.
func (ss *subscribers) restart(oldRev, newRev int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.mu.published = newRev
	for sub := range ss.mu.set {
		sub.mu.Lock()
		if sub.mu.lagFrom == 0 {
			sub.mu.lagFrom = oldRev + 1
		}
		sub.mu.Unlock()
	}
}

// ResetAppliedIndex sets the persisted applied index of the store kept in
// db to 0, for an engine restored from a snapshot file that will start a
// new cluster (and so a new raft log). The store must not be open.
func ResetAppliedIndex(db *engine.DB) error {
	b := db.NewBatch()
	b.Put(engine.CFMeta, metaAppliedIndex, encodeU64(0))
	return db.Write(b, true)
}
