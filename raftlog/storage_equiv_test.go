package raftlog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// TestStorageEquivalence runs the same seeded operations against Storage
// and raft's MemoryStorage, the reference implementation, and compares
// everything raft can observe after each one. Storage is reopened from the
// engine now and then and runs with a small cache, so reads cross from the
// cache to the engine.
func TestStorageEquivalence(t *testing.T) {
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runEquivalence(t, seed, 300) })
	}
}

func runEquivalence(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed))
	db := openTestEngine(t, t.TempDir())
	defer db.Close()
	cfg := StorageConfig{EntryCacheBytes: 600}
	s, err := Open(db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ms := raft.NewMemoryStorage()
	term := uint64(1)
	ops := map[string]int{}
	defer func() {
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		t.Logf("ops %v; log [%d, %d], cache %d entries", ops, first, last, s.CacheEntries())
	}()
	for step := range steps {
		first, _ := ms.FirstIndex()
		last, _ := ms.LastIndex()
		var op string
		switch k := rng.IntN(20); {
		case k < 12: // append, maybe over a conflicting tail
			if rng.IntN(3) == 0 {
				term++
			}
			lo := first
			if last+1 > first {
				lo = first + rng.Uint64N(last+2-first)
			}
			if lt, _ := ms.Term(lo - 1); lt > term {
				term = lt
			}
			var ents []pb.Entry
			for i := range 1 + rng.IntN(5) {
				data := make([]byte, rng.IntN(120))
				for j := range data {
					data[j] = byte(rng.Uint32())
				}
				ents = append(ents, pb.Entry{Index: lo + uint64(i), Term: term, Data: data})
			}
			op = fmt.Sprintf("append %d..%d term %d", lo, lo+uint64(len(ents))-1, term)
			if err := ms.Append(ents); err != nil {
				t.Fatal(err)
			}
			if err := s.Save(pb.HardState{Term: term, Commit: lo - 1}, ents, pb.Snapshot{}); err != nil {
				t.Fatal(err)
			}
		case k < 14 && last >= first: // compact
			i := first + rng.Uint64N(last-first+1)
			op = fmt.Sprintf("compact %d", i)
			e1, e2 := ms.Compact(i), s.Compact(i)
			if !errors.Is(e2, e1) && (e1 != nil || e2 != nil) {
				t.Fatalf("step %d %s: MemoryStorage %v, Storage %v", step, op, e1, e2)
			}
		case k < 16 && last >= first-1: // create snapshot
			i := first - 1 + rng.Uint64N(last-first+2)
			cs := &pb.ConfState{Voters: []uint64{1, 2, rng.Uint64N(5) + 3}}
			op = fmt.Sprintf("create-snapshot %d", i)
			snap1, e1 := ms.CreateSnapshot(i, cs, nil)
			snap2, e2 := s.CreateSnapshot(i, cs, nil)
			if !errors.Is(e2, e1) && (e1 != nil || e2 != nil) || !reflect.DeepEqual(snap1.Metadata, snap2.Metadata) {
				t.Fatalf("step %d %s: MemoryStorage %v %v, Storage %v %v", step, op, snap1.Metadata, e1, snap2.Metadata, e2)
			}
		case k < 17: // a snapshot from a leader, ahead of or behind the log
			term++
			i := last + rng.Uint64N(4) - 1
			snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{Index: i, Term: term,
				ConfState: pb.ConfState{Voters: []uint64{1, 2, 3}}}}
			op = fmt.Sprintf("apply-snapshot %d/%d", i, term)
			if i == 0 {
				continue
			}
			e1, e2 := ms.ApplySnapshot(snap), s.ApplySnapshot(snap)
			if !errors.Is(e2, e1) && (e1 != nil || e2 != nil) {
				t.Fatalf("step %d %s: MemoryStorage %v, Storage %v", step, op, e1, e2)
			}
		default:
			op = "reopen"
			if s, err = Open(db, cfg); err != nil {
				t.Fatal(err)
			}
		}
		ops[strings.Fields(op)[0]]++
		compareStorage(t, fmt.Sprintf("step %d (%s)", step, op), rng, ms, s)
	}
}

func compareStorage(t *testing.T, at string, rng *rand.Rand, ms *raft.MemoryStorage, s *Storage) {
	t.Helper()
	f1, _ := ms.FirstIndex()
	f2, _ := s.FirstIndex()
	l1, _ := ms.LastIndex()
	l2, _ := s.LastIndex()
	if f1 != f2 || l1 != l2 {
		t.Fatalf("%s: first/last %d/%d, want %d/%d", at, f2, l2, f1, l1)
	}
	for i := f1 - 1; i <= l1+1; i++ {
		t1, e1 := ms.Term(i)
		t2, e2 := s.Term(i)
		if t1 != t2 || !errors.Is(e2, e1) && (e1 != nil || e2 != nil) {
			t.Fatalf("%s: Term(%d) = %d, %v; want %d, %v", at, i, t2, e2, t1, e1)
		}
	}
	if f1 > 1 {
		if _, err := s.Entries(f1-1, l1+1, 1<<20); !errors.Is(err, raft.ErrCompacted) {
			t.Fatalf("%s: Entries below first = %v, want ErrCompacted", at, err)
		}
	}
	if l1 >= f1 {
		lo := f1 + rng.Uint64N(l1-f1+1)
		hi := lo + 1 + rng.Uint64N(l1-lo+1)
		maxSize := rng.Uint64N(400)
		ents1, e1 := ms.Entries(lo, hi, maxSize)
		ents2, e2 := s.Entries(lo, hi, maxSize)
		if !errors.Is(e2, e1) && (e1 != nil || e2 != nil) || !equalEntries(ents1, ents2) {
			t.Fatalf("%s: Entries(%d, %d, %d) = %d entries %v; want %d entries %v",
				at, lo, hi, maxSize, len(ents2), e2, len(ents1), e1)
		}
	}
	snap1, _ := ms.Snapshot()
	snap2, _ := s.Snapshot()
	if !reflect.DeepEqual(snap1.Metadata, snap2.Metadata) {
		t.Fatalf("%s: Snapshot %v, want %v", at, snap2.Metadata, snap1.Metadata)
	}
	if cb := s.CacheBytes(); cb > 600 {
		t.Fatalf("%s: cache holds %d bytes over its 600-byte budget", at, cb)
	}
}
