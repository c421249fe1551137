package raftlog

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/tuning"
)

// The tests of this file port raft's storage_test.go (MemoryStorage) to
// Storage. Every case runs in three set-ups, which must agree: entries
// served from the cache, entries served from the engine (a one-byte cache),
// and a Storage reopened from the engine before the operation.

type index uint64

// terms returns entries at consecutive indexes from i with the given terms
// (raft's storage_test helper).
func (i index) terms(terms ...uint64) []pb.Entry {
	ents := make([]pb.Entry, 0, len(terms))
	for k, t := range terms {
		ents = append(ents, pb.Entry{Index: uint64(i) + uint64(k), Term: t})
	}
	return ents
}

func openTestEngine(t testing.TB, dir string) *engine.DB {
	t.Helper()
	db, err := engine.Open(dir, tuning.LowMemory())
	if err != nil {
		t.Fatal(err)
	}
	return db
}

type storageSetup struct {
	name       string
	cacheBytes int64
	reopen     bool
}

var storageSetups = []storageSetup{
	{"cached", 1 << 20, false},
	{"uncached", 1, false},
	{"reopened", 1 << 20, true},
}

// seedStorage returns a Storage whose log is ents, ents[0] being the dummy
// entry, with no snapshot: the state raft's tests build as
// MemoryStorage{ents: ents}. It writes the keys directly, so Open's loading
// is exercised by every case.
func seedStorage(t *testing.T, su storageSetup, ents []pb.Entry) *Storage {
	t.Helper()
	db := openTestEngine(t, t.TempDir())
	t.Cleanup(func() { _ = db.Close() })
	b := db.NewBatch()
	b.Put(cfState, termRunKey(ents[0].Index), termValue(ents[0].Term))
	prev := ents[0].Term
	for i := range ents[1:] {
		e := ents[i+1]
		data, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		b.Put(cfEntries, entryKey(e.Index), data)
		if e.Term != prev {
			b.Put(cfState, termRunKey(e.Index), termValue(e.Term))
			prev = e.Term
		}
	}
	if err := db.Write(b, true); err != nil {
		t.Fatal(err)
	}
	s, err := Open(db, StorageConfig{EntryCacheBytes: su.cacheBytes, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if su.cacheBytes > 1 {
		// Warm the cache the way appends would have.
		s.mu.Lock()
		s.cache.append(ents[1:])
		s.mu.Unlock()
	}
	return s
}

// maybeReopen returns s, or a Storage freshly opened on s's engine.
func maybeReopen(t *testing.T, su storageSetup, s *Storage) *Storage {
	t.Helper()
	if !su.reopen {
		return s
	}
	r, err := Open(s.db, StorageConfig{EntryCacheBytes: su.cacheBytes, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// logOf returns the log as MemoryStorage's ents would hold it: the dummy
// (index and term only) followed by every entry.
func logOf(t *testing.T, s *Storage) []pb.Entry {
	t.Helper()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	dt, err := s.Term(first - 1)
	if err != nil {
		t.Fatal(err)
	}
	out := []pb.Entry{{Index: first - 1, Term: dt}}
	if last >= first {
		ents, err := s.Entries(first, last+1, math.MaxUint64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ents...)
	}
	return out
}

func forEachSetup(t *testing.T, f func(t *testing.T, su storageSetup)) {
	for _, su := range storageSetups {
		t.Run(su.name, func(t *testing.T) { f(t, su) })
	}
}

func TestStorageTerm(t *testing.T) {
	ents := index(3).terms(3, 4, 5)
	tests := []struct {
		i     uint64
		werr  error
		wterm uint64
	}{
		{2, raft.ErrCompacted, 0},
		{3, nil, 3},
		{4, nil, 4},
		{5, nil, 5},
		{6, raft.ErrUnavailable, 0},
	}
	forEachSetup(t, func(t *testing.T, su storageSetup) {
		for _, tt := range tests {
			s := maybeReopen(t, su, seedStorage(t, su, ents))
			term, err := s.Term(tt.i)
			if !errors.Is(err, tt.werr) || term != tt.wterm {
				t.Errorf("Term(%d) = %d, %v; want %d, %v", tt.i, term, err, tt.wterm, tt.werr)
			}
		}
	})
}

func TestStorageEntries(t *testing.T) {
	ents := index(3).terms(3, 4, 5, 6)
	sz := func(i int) uint64 { return uint64(ents[i].Size()) }
	tests := []struct {
		lo, hi, maxsize uint64
		werr            error
		wentries        []pb.Entry
	}{
		{2, 6, math.MaxUint64, raft.ErrCompacted, nil},
		{3, 4, math.MaxUint64, raft.ErrCompacted, nil},
		{4, 5, math.MaxUint64, nil, index(4).terms(4)},
		{4, 6, math.MaxUint64, nil, index(4).terms(4, 5)},
		{4, 7, math.MaxUint64, nil, index(4).terms(4, 5, 6)},
		// even if maxsize is zero, the first entry should be returned
		{4, 7, 0, nil, index(4).terms(4)},
		// limit to 2
		{4, 7, sz(1) + sz(2), nil, index(4).terms(4, 5)},
		{4, 7, sz(1) + sz(2) + sz(3)/2, nil, index(4).terms(4, 5)},
		{4, 7, sz(1) + sz(2) + sz(3) - 1, nil, index(4).terms(4, 5)},
		// all
		{4, 7, sz(1) + sz(2) + sz(3), nil, index(4).terms(4, 5, 6)},
	}
	forEachSetup(t, func(t *testing.T, su storageSetup) {
		for _, tt := range tests {
			s := maybeReopen(t, su, seedStorage(t, su, ents))
			got, err := s.Entries(tt.lo, tt.hi, tt.maxsize)
			if !errors.Is(err, tt.werr) || !equalEntries(got, tt.wentries) {
				t.Errorf("Entries(%d, %d, %d) = %v, %v; want %v, %v",
					tt.lo, tt.hi, tt.maxsize, got, err, tt.wentries, tt.werr)
			}
		}
	})
}

func TestStorageEntriesCacheAndEngine(t *testing.T) {
	// Half the entries in the engine only, half in the cache too: one read
	// spans both, and maxSize stops inside either part.
	db := openTestEngine(t, t.TempDir())
	defer db.Close()
	ents := index(1).terms(1, 1, 1, 2, 2, 2, 3, 3)
	for i := range ents {
		ents[i].Data = make([]byte, 100)
	}
	one := int64(ents[0].Size())
	s, err := Open(db, StorageConfig{EntryCacheBytes: 4 * one})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(pb.HardState{Term: 3, Commit: 8}, ents, pb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if n, b := s.CacheEntries(), s.CacheBytes(); n != 4 || b != 4*one {
		t.Fatalf("cache holds %d entries, %d bytes; want 4, %d", n, b, 4*one)
	}
	for lo := uint64(1); lo <= 8; lo++ {
		for hi := lo + 1; hi <= 9; hi++ {
			for _, maxN := range []uint64{0, 1, 2, 3, 8} {
				got, err := s.Entries(lo, hi, maxN*uint64(one))
				if err != nil {
					t.Fatal(err)
				}
				want := ents[lo-1 : hi-1]
				if n := max(1, maxN); uint64(len(want)) > n {
					want = want[:n]
				}
				if !equalEntries(got, want) {
					t.Fatalf("Entries(%d, %d, %d entries) = %v, want %v", lo, hi, maxN, got, want)
				}
			}
		}
	}
}

func TestStorageLastIndex(t *testing.T) {
	forEachSetup(t, func(t *testing.T, su storageSetup) {
		s := maybeReopen(t, su, seedStorage(t, su, index(3).terms(3, 4, 5)))
		if last, _ := s.LastIndex(); last != 5 {
			t.Errorf("LastIndex = %d, want 5", last)
		}
		if err := s.Save(pb.HardState{}, index(6).terms(5), pb.Snapshot{}); err != nil {
			t.Fatal(err)
		}
		s = maybeReopen(t, su, s)
		if last, _ := s.LastIndex(); last != 6 {
			t.Errorf("LastIndex = %d, want 6", last)
		}
	})
}

func TestStorageFirstIndex(t *testing.T) {
	forEachSetup(t, func(t *testing.T, su storageSetup) {
		s := maybeReopen(t, su, seedStorage(t, su, index(3).terms(3, 4, 5)))
		if first, _ := s.FirstIndex(); first != 4 {
			t.Errorf("FirstIndex = %d, want 4", first)
		}
		if err := s.Compact(4); err != nil {
			t.Fatal(err)
		}
		s = maybeReopen(t, su, s)
		if first, _ := s.FirstIndex(); first != 5 {
			t.Errorf("FirstIndex = %d, want 5", first)
		}
	})
}

func TestStorageCompact(t *testing.T) {
	ents := index(3).terms(3, 4, 5)
	tests := []struct {
		i      uint64
		werr   error
		windex uint64
		wterm  uint64
		wlen   int
	}{
		{2, raft.ErrCompacted, 3, 3, 3},
		{3, raft.ErrCompacted, 3, 3, 3},
		{4, nil, 4, 4, 2},
		{5, nil, 5, 5, 1},
	}
	forEachSetup(t, func(t *testing.T, su storageSetup) {
		for _, tt := range tests {
			s := seedStorage(t, su, ents)
			if err := s.Compact(tt.i); !errors.Is(err, tt.werr) {
				t.Errorf("Compact(%d) = %v, want %v", tt.i, err, tt.werr)
			}
			s = maybeReopen(t, su, s)
			log := logOf(t, s)
			if log[0].Index != tt.windex || log[0].Term != tt.wterm || len(log) != tt.wlen {
				t.Errorf("after Compact(%d): log %v, want dummy %d/%d and %d entries",
					tt.i, log, tt.windex, tt.wterm, tt.wlen)
			}
			if s.CacheEntries() > tt.wlen-1 {
				t.Errorf("after Compact(%d): cache holds %d entries, log %d", tt.i, s.CacheEntries(), tt.wlen-1)
			}
		}
	})
}

func TestStorageCreateSnapshot(t *testing.T) {
	ents := index(3).terms(3, 4, 5)
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	data := []byte("data")
	tests := []struct {
		i     uint64
		werr  error
		wsnap pb.Snapshot
	}{
		{4, nil, pb.Snapshot{Data: data, Metadata: pb.SnapshotMetadata{Index: 4, Term: 4, ConfState: *cs}}},
		{5, nil, pb.Snapshot{Data: data, Metadata: pb.SnapshotMetadata{Index: 5, Term: 5, ConfState: *cs}}},
	}
	forEachSetup(t, func(t *testing.T, su storageSetup) {
		for _, tt := range tests {
			s := seedStorage(t, su, ents)
			snap, err := s.CreateSnapshot(tt.i, cs, data)
			if !errors.Is(err, tt.werr) || !reflect.DeepEqual(snap, tt.wsnap) {
				t.Errorf("CreateSnapshot(%d) = %v, %v; want %v, %v", tt.i, snap, err, tt.wsnap, tt.werr)
			}
			s = maybeReopen(t, su, s)
			if got, _ := s.Snapshot(); !reflect.DeepEqual(got, tt.wsnap) {
				t.Errorf("Snapshot() = %v, want %v", got, tt.wsnap)
			}
			if _, gotCS, _ := s.InitialState(); !reflect.DeepEqual(gotCS, *cs) {
				t.Errorf("InitialState ConfState = %v, want %v", gotCS, *cs)
			}
			if _, err := s.CreateSnapshot(tt.i, cs, data); !errors.Is(err, raft.ErrSnapOutOfDate) {
				t.Errorf("second CreateSnapshot(%d) = %v, want ErrSnapOutOfDate", tt.i, err)
			}
		}
	})
}

func TestStorageAppend(t *testing.T) {
	ents := index(3).terms(3, 4, 5)
	tests := []struct {
		entries  []pb.Entry
		wentries []pb.Entry
	}{
		{index(1).terms(1, 2), index(3).terms(3, 4, 5)},
		{index(3).terms(3, 4, 5), index(3).terms(3, 4, 5)},
		{index(3).terms(3, 6, 6), index(3).terms(3, 6, 6)},
		{index(3).terms(3, 4, 5, 5), index(3).terms(3, 4, 5, 5)},
		// Truncate incoming entries, truncate the existing entries and append.
		{index(2).terms(3, 3, 5), index(3).terms(3, 5)},
		// Truncate the existing entries and append.
		{index(4).terms(5), index(3).terms(3, 5)},
		// Direct append.
		{index(6).terms(5), index(3).terms(3, 4, 5, 5)},
	}
	forEachSetup(t, func(t *testing.T, su storageSetup) {
		for _, tt := range tests {
			s := seedStorage(t, su, ents)
			if err := s.Save(pb.HardState{}, tt.entries, pb.Snapshot{}); err != nil {
				t.Fatal(err)
			}
			s = maybeReopen(t, su, s)
			if got := logOf(t, s); !equalEntries(got, tt.wentries) {
				t.Errorf("append %v: log %v, want %v", tt.entries, got, tt.wentries)
			}
		}
	})
}

func TestStorageApplySnapshot(t *testing.T) {
	cs := pb.ConfState{Voters: []uint64{1, 2, 3}}
	data := []byte("data")
	forEachSetup(t, func(t *testing.T, su storageSetup) {
		db := openTestEngine(t, t.TempDir())
		defer db.Close()
		s, err := Open(db, StorageConfig{EntryCacheBytes: su.cacheBytes})
		if err != nil {
			t.Fatal(err)
		}
		snap := pb.Snapshot{Data: data, Metadata: pb.SnapshotMetadata{Index: 4, Term: 4, ConfState: cs}}
		if err := s.ApplySnapshot(snap); err != nil {
			t.Fatal(err)
		}
		s = maybeReopen(t, su, s)
		if got, _ := s.Snapshot(); !reflect.DeepEqual(got, snap) {
			t.Errorf("Snapshot() = %v, want %v", got, snap)
		}
		if first, _ := s.FirstIndex(); first != 5 {
			t.Errorf("FirstIndex = %d, want 5", first)
		}
		if last, _ := s.LastIndex(); last != 4 {
			t.Errorf("LastIndex = %d, want 4", last)
		}
		if term, err := s.Term(4); err != nil || term != 4 {
			t.Errorf("Term(4) = %d, %v; want 4", term, err)
		}
		old := pb.Snapshot{Data: data, Metadata: pb.SnapshotMetadata{Index: 3, Term: 3, ConfState: cs}}
		if err := s.ApplySnapshot(old); !errors.Is(err, raft.ErrSnapOutOfDate) {
			t.Errorf("ApplySnapshot(older) = %v, want ErrSnapOutOfDate", err)
		}
	})
}

func TestStorageApplySnapshotDropsLog(t *testing.T) {
	forEachSetup(t, func(t *testing.T, su storageSetup) {
		s := seedStorage(t, su, index(3).terms(3, 4, 5, 5, 6))
		snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 5, Term: 5}}
		if err := s.Save(pb.HardState{Term: 6, Commit: 5}, index(6).terms(6, 6), snap); err != nil {
			t.Fatal(err)
		}
		s = maybeReopen(t, su, s)
		if got, want := logOf(t, s), index(5).terms(5, 6, 6); !equalEntries(got, want) {
			t.Errorf("log %v, want %v", got, want)
		}
		if hs := s.HardState(); hs.Term != 6 || hs.Commit != 5 {
			t.Errorf("HardState %v, want term 6 commit 5", hs)
		}
	})
}

func TestStorageOwnership(t *testing.T) {
	// Storage must not retain the caller's slices, and a caller appending
	// to a returned slice must not corrupt Storage.
	db := openTestEngine(t, t.TempDir())
	defer db.Close()
	s, err := Open(db, StorageConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ents := []pb.Entry{{Index: 1, Term: 1, Data: []byte("aaa")}, {Index: 2, Term: 1, Data: []byte("bbb")}}
	if err := s.Save(pb.HardState{Term: 1}, ents, pb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	ents[0].Data[0] = 'x'
	got, err := s.Entries(1, 2, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0].Data) != "aaa" {
		t.Fatalf("Storage retained the caller's Data: %q", got[0].Data)
	}
	_ = append(got, pb.Entry{Index: 99})
	again, _ := s.Entries(1, 3, math.MaxUint64)
	if len(again) != 2 || again[1].Index != 2 {
		t.Fatalf("append to a returned slice corrupted Storage: %v", again)
	}
}

func TestStorageSyncPolicy(t *testing.T) {
	db := openTestEngine(t, t.TempDir())
	defer db.Close()
	s, err := Open(db, StorageConfig{})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		hs       pb.HardState
		ents     []pb.Entry
		wantSync bool
	}{
		{pb.HardState{Term: 1, Vote: 1}, nil, true},                          // vote
		{pb.HardState{Term: 1, Vote: 1, Commit: 0}, index(1).terms(1), true}, // entries
		{pb.HardState{Term: 1, Vote: 1, Commit: 1}, nil, false},              // commit only
		{pb.HardState{Term: 1, Vote: 1, Commit: 1}, nil, false},              // nothing new
		{pb.HardState{Term: 2, Vote: 0, Commit: 1}, nil, true},               // term
	}
	for i, st := range steps {
		before := s.SyncedWrites()
		if err := s.Save(st.hs, st.ents, pb.Snapshot{}); err != nil {
			t.Fatal(err)
		}
		if synced := s.SyncedWrites() > before; synced != st.wantSync {
			t.Errorf("step %d: synced %t, want %t", i, synced, st.wantSync)
		}
	}
}

func TestStorageCacheEviction(t *testing.T) {
	db := openTestEngine(t, t.TempDir())
	defer db.Close()
	const valueBytes = 1000
	e := pb.Entry{Index: 1, Term: 1, Data: make([]byte, valueBytes)}
	one := int64(e.Size())
	budget := 10*one + one/2 // room for 10 entries
	s, err := Open(db, StorageConfig{EntryCacheBytes: budget})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 100; i++ {
		ent := pb.Entry{Index: i, Term: 1, Data: make([]byte, valueBytes)}
		ent.Data[0] = byte(i)
		if err := s.Save(pb.HardState{Term: 1, Commit: i}, []pb.Entry{ent}, pb.Snapshot{}); err != nil {
			t.Fatal(err)
		}
		if b := s.CacheBytes(); b > budget {
			t.Fatalf("after %d appends the cache holds %d bytes, budget %d", i, b, budget)
		}
	}
	if n, b := s.CacheEntries(), s.CacheBytes(); n != 10 || b != 10*one {
		t.Fatalf("cache holds %d entries (%d bytes), want the newest 10 (%d bytes)", n, b, 10*one)
	}
	if first := s.cache.first(); first != 91 {
		t.Fatalf("cache starts at %d, want 91 (oldest evicted first)", first)
	}
	// Evicted entries are read back from the engine.
	got, err := s.Entries(1, 101, math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	for i, ent := range got {
		if ent.Index != uint64(i+1) || ent.Data[0] != byte(i+1) {
			t.Fatalf("entry %d = index %d data[0] %d", i+1, ent.Index, ent.Data[0])
		}
	}
	// A conflicting append replaces the cached tail and releases its bytes.
	if err := s.Save(pb.HardState{Term: 2}, index(96).terms(2), pb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if n := s.CacheEntries(); n != 6 {
		t.Fatalf("after truncation the cache holds %d entries, want 6 (91..96)", n)
	}
	// An entry larger than the whole budget is not cached at all.
	big := pb.Entry{Index: 97, Term: 2, Data: make([]byte, 2*budget)}
	if err := s.Save(pb.HardState{Term: 2}, []pb.Entry{big}, pb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if n, b := s.CacheEntries(), s.CacheBytes(); n != 0 || b != 0 {
		t.Fatalf("cache holds %d entries (%d bytes) after an oversized entry, want none", n, b)
	}
	if got, err := s.Entries(97, 98, 0); err != nil || len(got) != 1 || len(got[0].Data) != len(big.Data) {
		t.Fatalf("oversized entry not read back from the engine: %v", err)
	}
}

func TestStorageReopenCorrupt(t *testing.T) {
	db := openTestEngine(t, t.TempDir())
	defer db.Close()
	s, err := Open(db, StorageConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(pb.HardState{Term: 2, Commit: 3}, index(1).terms(1, 2, 2), pb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	// Lose the run that says term 2 starts at index 2.
	b := db.NewBatch()
	b.Delete(cfState, termRunKey(2))
	if err := db.Write(b, true); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(db, StorageConfig{}); !errors.Is(err, ErrCorruptLog) {
		t.Fatalf("Open over a corrupt log = %v, want ErrCorruptLog", err)
	}
}

func TestStorageConfigValidate(t *testing.T) {
	if err := (StorageConfig{}).Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (StorageConfig{EntryCacheBytes: -1}).Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
	}
}

func equalEntries(a, b []pb.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Index != b[i].Index || a[i].Term != b[i].Term || a[i].Type != b[i].Type ||
			string(a[i].Data) != string(b[i].Data) {
			return false
		}
	}
	return true
}

// TestStorageMigratesLegacyLayout: a log written with every record in the
// entries' column family (the layout before the split) opens with the same
// state, and its records end up in the state family.
func TestStorageMigratesLegacyLayout(t *testing.T) {
	db := openTestEngine(t, t.TempDir())
	defer db.Close()
	legacy := func(tag byte, idx uint64) []byte {
		k := make([]byte, 9)
		k[0] = tag
		binary.BigEndian.PutUint64(k[1:], idx)
		return k
	}
	hs := pb.HardState{Term: 3, Vote: 2, Commit: 6}
	snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: 4, Term: 2, ConfState: pb.ConfState{Voters: []uint64{1, 2}}}}
	hsb, _ := hs.Marshal()
	snapb, _ := snap.Marshal()
	b := db.NewBatch()
	b.Put(cfEntries, []byte{'h'}, hsb)
	b.Put(cfEntries, []byte{'s'}, snapb)
	b.Put(cfEntries, legacy('t', 4), termValue(2))
	b.Put(cfEntries, legacy('t', 6), termValue(3))
	for i, term := range map[uint64]uint64{5: 2, 6: 3, 7: 3} {
		e := pb.Entry{Index: i, Term: term, Data: []byte{byte(i)}}
		data, _ := e.Marshal()
		b.Put(cfEntries, entryKey(i), data)
	}
	if err := db.Write(b, true); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ { // the second Open finds the new layout
		s, err := Open(db, StorageConfig{})
		if err != nil {
			t.Fatalf("open %d: %v", round, err)
		}
		gotHS, gotCS, _ := s.InitialState()
		if !isHardStateEqual(gotHS, hs) || len(gotCS.Voters) != 2 {
			t.Fatalf("open %d: state %v %v, want %v and voters [1 2]", round, gotHS, gotCS, hs)
		}
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		if first != 5 || last != 7 {
			t.Fatalf("open %d: log [%d, %d], want [5, 7]", round, first, last)
		}
		for i, want := range map[uint64]uint64{4: 2, 5: 2, 6: 3, 7: 3} {
			if term, err := s.Term(i); err != nil || term != want {
				t.Fatalf("open %d: Term(%d) = %d, %v; want %d", round, i, term, err, want)
			}
		}
	}
	it, err := db.NewIterator(cfEntries, engine.IterOptions{Lower: entriesEnd})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if it.First() {
		t.Fatalf("a legacy record stayed among the entries: %x", it.Key())
	}
}

// TestStorageDropTruncatedFiles: once the log is truncated past flushed
// files of entries, DropTruncatedFiles gives their space back at once,
// and the entries kept still read back, also after a reopen.
func TestStorageDropTruncatedFiles(t *testing.T) {
	dir := t.TempDir()
	opts := tuning.LowMemory()
	opts.TargetFileSizeBaseBytes = 64 << 10 // many small files below L0
	open := func() *engine.DB {
		db, err := engine.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	s, err := Open(db, StorageConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const entries, entryBytes = 1200, 1000
	value := make([]byte, entryBytes)
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range value {
		value[i] = byte(rnd.Uint32()) // incompressible
	}
	ents := make([]pb.Entry, entries)
	for i := range ents {
		ents[i] = pb.Entry{Index: uint64(i + 1), Term: 1, Data: value}
	}
	if err := s.Save(pb.HardState{Term: 1, Commit: entries}, ents, pb.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	// RocksDB drops files only below L0: move the log there, as background
	// compaction does with a log that grows.
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.CompactRange(cfEntries, nil, nil); err != nil {
		t.Fatal(err)
	}
	idx := uint64(entries)
	before, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	cut := idx - idx/6
	if err := s.Compact(cut); err != nil {
		t.Fatal(err)
	}
	if err := s.DropTruncatedFiles(); err != nil {
		t.Fatal(err)
	}
	after, err := db.Stats()
	if err != nil {
		t.Fatal(err)
	}
	// A sixth of the log is kept: a little more stays (the file across the
	// cut, the state family's).
	if after.LiveSSTBytes > before.LiveSSTBytes/3 {
		t.Fatalf("live SST bytes %d before, %d after dropping five sixths of the log", before.LiveSSTBytes, after.LiveSSTBytes)
	}
	check := func(s *Storage) {
		t.Helper()
		es, err := s.Entries(cut+1, idx+1, 1<<30)
		if err != nil || uint64(len(es)) != idx-cut {
			t.Fatalf("entries (%d, %d]: %d, %v", cut, idx, len(es), err)
		}
	}
	check(s)
	db.Close()
	db = open()
	defer db.Close()
	s, err = Open(db, StorageConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != cut+1 {
		t.Fatalf("first index %d after reopen, want %d", first, cut+1)
	}
	check(s)
}
