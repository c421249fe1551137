package raftlog

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/engine/failpoint"
)

// Storage is raft's log, hard state and snapshot metadata, kept in the
// engine's raft column family (key layout in keys.go). It implements
// raft.Storage and adds the writes raft leaves to the application: Save
// (one engine batch per Ready), ApplySnapshot, CreateSnapshot and Compact.
//
// All methods are safe for concurrent use; one mutex guards the in-memory
// view and is held across the engine write that changes it, so readers
// never see memory ahead of the engine or the engine ahead of memory.
// Storage does not own the engine: closing the engine is the caller's job,
// after every user of the Storage has stopped.
type Storage struct {
	db *engine.DB
	lg *zap.Logger

	mu struct {
		sync.Mutex
		hardState raftpb.HardState
		// snapshot is the latest snapshot: metadata, and Data as given to
		// CreateSnapshot or ApplySnapshot.
		snapshot raftpb.Snapshot
		// terms covers [dummy, last]; dummy+1 is FirstIndex.
		terms termIndex
		// batch and buf are reused by every write.
		batch *engine.Batch
		buf   []byte
	}
	// cache is guarded by mu except for cache.bytes().
	cache *entryCache

	syncedWrites  atomic.Uint64
	onSyncedWrite func(time.Duration) // StorageConfig.OnSyncedWrite
}

var _ raft.Storage = (*Storage)(nil)

// Open loads the raft state persisted in db's raft column family; an empty
// column family is an empty log (FirstIndex 1, LastIndex 0).
func Open(db *engine.DB, cfg StorageConfig) (*Storage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Storage{db: db, lg: cfg.Logger, cache: newEntryCache(cfg.EntryCacheBytes), onSyncedWrite: cfg.OnSyncedWrite}
	s.mu.batch = db.NewBatch()
	if err := s.migrateLegacyLayout(); err != nil {
		return nil, err
	}

	if v, ok, err := db.Get(cfState, keyHardState); err != nil {
		return nil, err
	} else if ok {
		if err := s.mu.hardState.Unmarshal(v); err != nil {
			return nil, fmt.Errorf("%w: hard state: %w", ErrCorruptLog, err)
		}
	}
	if v, ok, err := db.Get(cfState, keySnapshot); err != nil {
		return nil, err
	} else if ok {
		if err := s.mu.snapshot.Unmarshal(v); err != nil {
			return nil, fmt.Errorf("%w: snapshot: %w", ErrCorruptLog, err)
		}
	}
	terms, err := s.loadTerms()
	if err != nil {
		return nil, err
	}
	s.mu.terms = terms
	return s, nil
}

// migrateLegacyLayout moves the hard state, snapshot metadata and term
// runs of a log written before they left engine.CFRaft (tags 'h', 's' and
// 't' there) to their keys in cfState, in one synced batch: a crash leaves
// either layout, never a mix.
func (s *Storage) migrateLegacyLayout() error {
	it, err := s.db.NewIterator(cfEntries, engine.IterOptions{Lower: entriesEnd})
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key(), it.Value()
		switch {
		case len(k) == 1 && k[0] == 'h':
			b.Put(cfState, keyHardState, v)
		case len(k) == 1 && k[0] == 's':
			b.Put(cfState, keySnapshot, v)
		case len(k) == entryKeyLen && k[0] == 't':
			b.Put(cfState, termRunKey(binary.BigEndian.Uint64(k[1:])), v)
		default:
			it.Close()
			return fmt.Errorf("%w: unknown key %x in the raft log", ErrCorruptLog, k)
		}
		n++
	}
	if err := it.Close(); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	b.DeleteRange(cfEntries, entriesEnd, []byte{'t' + 1})
	if err := s.db.Write(b, true); err != nil {
		return err
	}
	s.lg.Info("raftlog: moved the log's state records out of the entries' column family", zap.Int("records", n))
	return nil
}

// DropTruncatedFiles deletes the SST files of entries that lie wholly
// below the log's first index: truncation only writes a range deletion,
// and without this the space of those entries would come back only when
// a compaction rewrites their files. It reads nothing and rewrites
// nothing; safe to call from any goroutine at any time.
func (s *Storage) DropTruncatedFiles() error {
	s.mu.Lock()
	dummy := s.mu.terms.dummy()
	s.mu.Unlock()
	if dummy == 0 {
		return nil
	}
	// Every entry at or below dummy is deleted (stageCompactLocked), and no
	// reader asks for one: dropping their files changes nothing visible.
	return s.db.DeleteFilesInRange(cfEntries, entryKey(0), entryKey(dummy))
}

// loadTerms reads the term runs and checks them against the first and last
// entries.
func (s *Storage) loadTerms() (termIndex, error) {
	it, err := s.db.NewIterator(cfState, engine.IterOptions{
		Lower: termRunsStart, Upper: termRunsEnd})
	if err != nil {
		return termIndex{}, err
	}
	var runs []termRun
	for ok := it.First(); ok; ok = it.Next() {
		idx, err := decodeTermRunKey(it.Key())
		if err != nil || len(it.Value()) != 8 {
			it.Close()
			return termIndex{}, fmt.Errorf("%w: term run %x", ErrCorruptLog, it.Key())
		}
		runs = append(runs, termRun{idx, binary.BigEndian.Uint64(it.Value())})
	}
	if err := it.Close(); err != nil {
		return termIndex{}, err
	}
	t := newTermIndex(0, 0)
	if len(runs) > 0 {
		t = termIndex{runs: runs, last: runs[0].first}
	}
	for k := 1; k < len(t.runs); k++ {
		if t.runs[k].first <= t.runs[k-1].first || t.runs[k].term <= t.runs[k-1].term {
			return termIndex{}, fmt.Errorf("%w: term runs out of order: %v", ErrCorruptLog, t.runs)
		}
	}

	it, err = s.db.NewIterator(cfEntries, engine.IterOptions{
		Lower: entriesStart, Upper: entriesEnd})
	if err != nil {
		return termIndex{}, err
	}
	defer it.Close()
	if !it.First() {
		if err := it.Error(); err != nil {
			return termIndex{}, err
		}
		if len(t.runs) != 1 {
			return termIndex{}, fmt.Errorf("%w: no entries but term runs %v", ErrCorruptLog, t.runs)
		}
		return t, nil
	}
	first, err := s.checkEntry(it, t)
	if err != nil {
		return termIndex{}, err
	}
	if first != t.dummy()+1 {
		return termIndex{}, fmt.Errorf("%w: first entry %d, want %d (dummy %d)",
			ErrCorruptLog, first, t.dummy()+1, t.dummy())
	}
	it.Last()
	last, err := s.checkEntry(it, t)
	if err != nil {
		return termIndex{}, err
	}
	if t.runs[len(t.runs)-1].first > last {
		return termIndex{}, fmt.Errorf("%w: term run %v past last entry %d", ErrCorruptLog, t.runs[len(t.runs)-1], last)
	}
	t.last = last
	// Whether every index between first and last is present would cost a
	// scan of the log; reads check it instead (Entries panics on a gap).
	return t, nil
}

// checkEntry decodes the entry under it and checks its index and, against
// t's runs, its term; it returns the index.
func (s *Storage) checkEntry(it *engine.Iterator, t termIndex) (uint64, error) {
	idx, err := decodeEntryKey(it.Key())
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrCorruptLog, err)
	}
	var e raftpb.Entry
	if err := e.Unmarshal(it.Value()); err != nil {
		return 0, fmt.Errorf("%w: entry %d: %w", ErrCorruptLog, idx, err)
	}
	if e.Index != idx || idx < t.dummy() {
		return 0, fmt.Errorf("%w: entry under key %d has index %d (dummy %d)", ErrCorruptLog, idx, e.Index, t.dummy())
	}
	if got := t.term(idx); got != e.Term {
		return 0, fmt.Errorf("%w: entry %d has term %d, term runs say %d", ErrCorruptLog, idx, e.Term, got)
	}
	return idx, nil
}

// InitialState implements raft.Storage: the saved HardState, and the
// ConfState of the latest snapshot.
func (s *Storage) InitialState() (raftpb.HardState, raftpb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.hardState, cloneConfState(s.mu.snapshot.Metadata.ConfState), nil
}

// HardState returns the saved HardState.
func (s *Storage) HardState() raftpb.HardState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.hardState
}

// Entries implements raft.Storage: the entries [lo, hi), at least one if
// any, then as many as fit in maxSize bytes (encoded size). The returned
// slice is freshly allocated; its entries' Data may be shared with the
// cache and must not be mutated. Entries come from the cache when cached
// and from the engine otherwise.
//
// ErrCompacted if lo <= the compacted index; ErrUnavailable if the log is
// empty. hi beyond LastIndex()+1 is a caller bug and panics.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]raftpb.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dummy, last := s.mu.terms.dummy(), s.mu.terms.last
	if lo <= dummy {
		return nil, raft.ErrCompacted
	}
	if hi > last+1 {
		s.lg.Panic("raftlog: Entries hi out of bound",
			zap.Uint64("lo", lo), zap.Uint64("hi", hi), zap.Uint64("last-index", last))
	}
	if last == dummy {
		return nil, raft.ErrUnavailable
	}
	if lo >= hi {
		return nil, nil
	}

	out := make([]raftpb.Entry, 0, min(hi-lo, 64))
	var size uint64
	fits := func(entrySize uint64) bool {
		if len(out) > 0 && size+entrySize > maxSize {
			return false
		}
		size += entrySize
		return true
	}
	cacheFirst := s.cache.first()
	if s.cache.len() == 0 {
		cacheFirst = last + 1
	}
	if lo < cacheFirst {
		full, err := s.readEntriesLocked(lo, min(hi, cacheFirst), fits, &out)
		if err != nil || !full {
			return out, err
		}
		lo = cacheFirst
	}
	if lo < hi {
		for _, e := range s.cache.slice(lo, hi) {
			if !fits(uint64(e.Size())) {
				break
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// readEntriesLocked appends the engine's entries [lo, hi) to out while fits
// allows; full reports whether all of them were appended.
// REQUIRES: s.mu held; dummy < lo < hi <= last+1.
func (s *Storage) readEntriesLocked(lo, hi uint64, fits func(uint64) bool, out *[]raftpb.Entry) (full bool, err error) {
	it, err := s.db.NewIterator(cfEntries, engine.IterOptions{Lower: entryKey(lo), Upper: entryKey(hi)})
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := it.Close(); err == nil {
			err = cerr
		}
	}()
	want := lo
	for ok := it.First(); ok; ok = it.Next() {
		idx, err := decodeEntryKey(it.Key())
		if err != nil || idx != want {
			s.lg.Panic("raftlog: gap in the persisted log",
				zap.Uint64("want-index", want), zap.Binary("key", it.Key()),
				zap.Uint64("lo", lo), zap.Uint64("hi", hi), zap.Error(err))
		}
		v := it.Value()
		if !fits(uint64(len(v))) {
			return false, nil
		}
		var e raftpb.Entry
		if err := e.Unmarshal(v); err != nil {
			s.lg.Panic("raftlog: undecodable entry", zap.Uint64("index", idx), zap.Error(err))
		}
		*out = append(*out, e)
		want++
	}
	if err := it.Error(); err != nil {
		return false, err
	}
	if want != hi {
		s.lg.Panic("raftlog: persisted log ends early",
			zap.Uint64("want-index", want), zap.Uint64("lo", lo), zap.Uint64("hi", hi))
	}
	return true, nil
}

// Term implements raft.Storage: the term of entry i, for i in
// [FirstIndex()-1, LastIndex()], from memory. ErrCompacted below that
// range, ErrUnavailable above it.
func (s *Storage) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < s.mu.terms.dummy() {
		return 0, raft.ErrCompacted
	}
	if i > s.mu.terms.last {
		return 0, raft.ErrUnavailable
	}
	return s.mu.terms.term(i), nil
}

// LastIndex implements raft.Storage.
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.terms.last, nil
}

// FirstIndex implements raft.Storage: one past the compacted index.
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.terms.dummy() + 1, nil
}

// Snapshot implements raft.Storage: the latest snapshot, which in MetaStore
// is metadata only (the state itself is the engine; see the package doc).
func (s *Storage) Snapshot() (raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.mu.snapshot
	snap.Metadata.ConfState = cloneConfState(snap.Metadata.ConfState)
	return snap, nil
}

// Save persists one Ready's worth of raft state in one engine batch:
// snapshot (which replaces the log), entries (truncating any conflicting
// tail), then hard state. The batch is synced when raft requires it: when
// it holds entries or a snapshot, or the term or vote changed
// (raft.MustSync); a commit-index-only change is written unsynced and made
// durable by the next synced write, as RocksDB's WAL is ordered.
//
// Entries already compacted are skipped; entries leaving a gap after the
// last index are a caller bug and panic. Save copies what it keeps: the
// caller may reuse ents after it returns. An error is fatal to the caller
// (the durability of this and earlier unsynced batches is unknown).
func (s *Storage) Save(hs raftpb.HardState, ents []raftpb.Entry, snap raftpb.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.batch
	b.Reset()
	u, err := s.stageLocked(b, hs, ents, snap)
	if err != nil {
		return err
	}
	if b.Empty() {
		return nil
	}
	start := time.Now()
	if u.sync && failpoint.Enabled {
		// The synced write is the raft log's fsync: an injected error here
		// is a failed fsync, which the caller treats as fatal.
		if err := failpoint.Inject(failpoint.RaftSync); err != nil {
			return err
		}
	}
	if err := s.db.Write(b, u.sync); err != nil {
		return err
	}
	if u.sync {
		s.syncedWrites.Add(1)
		if s.onSyncedWrite != nil {
			s.onSyncedWrite(time.Since(start))
		}
	}
	s.commitLocked(u)
	return nil
}

// ApplySnapshot replaces the log with snap: its metadata becomes the
// snapshot, every entry is dropped and snap's index and term become the
// dummy entry (raft's MemoryStorage semantics). ErrSnapOutOfDate if snap is
// not newer than the current snapshot. Written synced.
func (s *Storage) ApplySnapshot(snap raftpb.Snapshot) error {
	if raft.IsEmptySnap(snap) {
		return nil
	}
	return s.Save(raftpb.HardState{}, nil, snap)
}

// update is a staged change of Storage's memory, committed after the batch
// that persists it is written.
type update struct {
	sync       bool
	hardState  *raftpb.HardState
	snapshot   *raftpb.Snapshot
	terms      termIndex
	cacheReset bool
	cacheEnts  []raftpb.Entry
}

// REQUIRES: s.mu held.
func (s *Storage) stageLocked(b *engine.Batch, hs raftpb.HardState, ents []raftpb.Entry, snap raftpb.Snapshot) (update, error) {
	u := update{terms: termIndex{runs: slices.Clone(s.mu.terms.runs), last: s.mu.terms.last}}
	if !raft.IsEmptySnap(snap) {
		m := snap.Metadata
		if m.Index <= s.mu.snapshot.Metadata.Index {
			return update{}, raft.ErrSnapOutOfDate
		}
		b.DeleteRange(cfEntries, entriesStart, entriesEnd)
		b.DeleteRange(cfState, termRunsStart, termRunsEnd)
		b.Put(cfState, termRunKey(m.Index), termValue(m.Term))
		kept := snap
		kept.Metadata.ConfState = cloneConfState(m.ConfState)
		kept.Data = slices.Clone(snap.Data)
		b.Put(cfState, keySnapshot, s.marshalLocked(&kept))
		u.snapshot = &kept
		u.terms = newTermIndex(m.Index, m.Term)
		u.cacheReset = true
		u.sync = true
	}
	if len(ents) > 0 {
		s.stageEntriesLocked(b, &u, ents)
	}
	if !raft.IsEmptyHardState(hs) && !isHardStateEqual(hs, s.mu.hardState) {
		b.Put(cfState, keyHardState, s.marshalLocked(&hs))
		h := hs
		u.hardState = &h
		if raft.MustSync(hs, s.mu.hardState, 0) {
			u.sync = true
		}
	}
	return u, nil
}

// REQUIRES: s.mu held.
func (s *Storage) stageEntriesLocked(b *engine.Batch, u *update, ents []raftpb.Entry) {
	t := &u.terms
	dummy := t.dummy()
	if ents[len(ents)-1].Index <= dummy {
		return // all compacted
	}
	if ents[0].Index <= dummy {
		ents = ents[dummy+1-ents[0].Index:]
	}
	first, newLast, oldLast := ents[0].Index, ents[len(ents)-1].Index, t.last
	if first > oldLast+1 {
		s.lg.Panic("raftlog: appending entries leaves a gap",
			zap.Uint64("first-new-index", first), zap.Uint64("last-index", oldLast))
	}
	if first <= oldLast {
		// A conflicting tail: raft only rewrites from the first index whose
		// term differs, and everything after it goes.
		if t.truncateFrom(first) {
			b.DeleteRange(cfState, termRunKey(first), termRunsEnd)
		}
		if newLast < oldLast {
			b.DeleteRange(cfEntries, entryKey(newLast+1), entryKey(oldLast+1))
		}
	}
	if oldLast == 0 {
		// The first append to a fresh log: persist the dummy run 0:0 too,
		// or Open would take the first entry's run for the dummy.
		b.Put(cfState, termRunKey(0), termValue(0))
	}
	u.cacheEnts = make([]raftpb.Entry, 0, len(ents))
	for i := range ents {
		e := &ents[i]
		if e.Index != first+uint64(i) {
			s.lg.Panic("raftlog: entries to append are not contiguous",
				zap.Uint64("index", e.Index), zap.Uint64("want-index", first+uint64(i)))
		}
		b.Put(cfEntries, entryKey(e.Index), s.marshalLocked(e))
		if t.append(s.lg, e.Index, e.Term) {
			b.Put(cfState, termRunKey(e.Index), termValue(e.Term))
		}
		u.cacheEnts = append(u.cacheEnts, raftpb.Entry{
			Term: e.Term, Index: e.Index, Type: e.Type, Data: slices.Clone(e.Data)})
	}
	u.sync = true
}

// REQUIRES: s.mu held; u's batch written.
func (s *Storage) commitLocked(u update) {
	if u.snapshot != nil {
		s.mu.snapshot = *u.snapshot
	}
	if u.hardState != nil {
		s.mu.hardState = *u.hardState
	}
	s.mu.terms = u.terms
	if u.cacheReset {
		s.cache.clear()
	}
	s.cache.append(u.cacheEnts)
}

type marshaler interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

// marshalLocked encodes m into the reused buffer; the batch copies it.
// REQUIRES: s.mu held.
func (s *Storage) marshalLocked(m marshaler) []byte {
	n := m.Size()
	if cap(s.mu.buf) < n {
		s.mu.buf = make([]byte, n)
	}
	buf := s.mu.buf[:n]
	if _, err := m.MarshalToSizedBuffer(buf); err != nil {
		s.lg.Panic("raftlog: marshal", zap.Error(err))
	}
	return buf
}

func termValue(term uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, term)
}

// CreateSnapshot records a snapshot at index i (which must not be above
// LastIndex) with the ConfState in effect at i (nil keeps the previous one)
// and the given data, and returns it. It does not compact: call Compact
// with the same index after it, or use SnapshotAndCompact. ErrSnapOutOfDate
// if i is not above the current snapshot, ErrCompacted if i is below the
// dummy entry (its term is gone).
func (s *Storage) CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.batch
	b.Reset()
	snap, err := s.stageSnapshotLocked(b, i, cs, data)
	if err != nil {
		return raftpb.Snapshot{}, err
	}
	if err := s.db.Write(b, false); err != nil {
		return raftpb.Snapshot{}, err
	}
	s.mu.snapshot = snap
	snap.Metadata.ConfState = cloneConfState(snap.Metadata.ConfState)
	return snap, nil
}

// REQUIRES: s.mu held.
func (s *Storage) stageSnapshotLocked(b *engine.Batch, i uint64, cs *raftpb.ConfState, data []byte) (raftpb.Snapshot, error) {
	if i <= s.mu.snapshot.Metadata.Index {
		return raftpb.Snapshot{}, raft.ErrSnapOutOfDate
	}
	if i > s.mu.terms.last {
		s.lg.Panic("raftlog: snapshot index beyond the log",
			zap.Uint64("snapshot-index", i), zap.Uint64("last-index", s.mu.terms.last))
	}
	if i < s.mu.terms.dummy() {
		return raftpb.Snapshot{}, raft.ErrCompacted
	}
	snap := raftpb.Snapshot{Data: slices.Clone(data), Metadata: raftpb.SnapshotMetadata{
		Index: i, Term: s.mu.terms.term(i), ConfState: s.mu.snapshot.Metadata.ConfState}}
	if cs != nil {
		snap.Metadata.ConfState = cloneConfState(*cs)
	}
	b.Put(cfState, keySnapshot, s.marshalLocked(&snap))
	return snap, nil
}

// Compact discards the entries up to and including compactIndex, keeping
// compactIndex's term as the new dummy entry. It is the caller's job not to
// compact beyond what the state machine has durably applied, and to record
// a snapshot at compactIndex first (CreateSnapshot) so that InitialState's
// ConfState matches the new first index. ErrCompacted if compactIndex is
// already compacted; beyond LastIndex it panics. Written unsynced: the next
// synced write makes it durable, and losing it loses nothing.
func (s *Storage) Compact(compactIndex uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.batch
	b.Reset()
	if err := s.stageCompactLocked(b, compactIndex); err != nil {
		return err
	}
	if err := s.db.Write(b, false); err != nil {
		return err
	}
	s.commitCompactLocked(compactIndex)
	return nil
}

// SnapshotAndCompact records a snapshot at index i with ConfState cs and
// compacts the log to i, in one batch. It is what Node.CompactLog uses.
func (s *Storage) SnapshotAndCompact(i uint64, cs raftpb.ConfState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.mu.batch
	b.Reset()
	snap, err := s.stageSnapshotLocked(b, i, &cs, nil)
	if err != nil {
		return err
	}
	if err := s.stageCompactLocked(b, i); err != nil {
		return err
	}
	if err := s.db.Write(b, false); err != nil {
		return err
	}
	s.mu.snapshot = snap
	s.commitCompactLocked(i)
	return nil
}

// REQUIRES: s.mu held.
func (s *Storage) stageCompactLocked(b *engine.Batch, c uint64) error {
	dummy, last := s.mu.terms.dummy(), s.mu.terms.last
	if c <= dummy {
		return raft.ErrCompacted
	}
	if c > last {
		s.lg.Panic("raftlog: compact index beyond the log",
			zap.Uint64("compact-index", c), zap.Uint64("last-index", last))
	}
	b.DeleteRange(cfEntries, entryKey(dummy+1), entryKey(c+1))
	b.DeleteRange(cfState, termRunKey(dummy), termRunKey(c))
	b.Put(cfState, termRunKey(c), termValue(s.mu.terms.term(c)))
	return nil
}

// REQUIRES: s.mu held.
func (s *Storage) commitCompactLocked(c uint64) {
	s.mu.terms.compact(c)
	s.cache.compactTo(c)
}

// CacheBytes returns the encoded bytes of the entries held in memory by
// the entry cache; safe to call from any goroutine at any time.
func (s *Storage) CacheBytes() int64 { return s.cache.bytes() }

// CacheEntries returns the number of entries in the entry cache.
func (s *Storage) CacheEntries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cache.len()
}

// SyncedWrites returns how many synced batches Save has written: with group
// commit, far fewer than the entries it persisted.
func (s *Storage) SyncedWrites() uint64 { return s.syncedWrites.Load() }

func isHardStateEqual(a, b raftpb.HardState) bool {
	return a.Term == b.Term && a.Vote == b.Vote && a.Commit == b.Commit
}

func cloneConfState(cs raftpb.ConfState) raftpb.ConfState {
	return raftpb.ConfState{
		Voters:         slices.Clone(cs.Voters),
		Learners:       slices.Clone(cs.Learners),
		VotersOutgoing: slices.Clone(cs.VotersOutgoing),
		LearnersNext:   slices.Clone(cs.LearnersNext),
		AutoLeave:      cs.AutoLeave,
	}
}
