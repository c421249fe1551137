package mvcc

import (
	"bytes"
	"fmt"
	"sort"
	"sync"

	"github.com/metastore/metastore/engine"
)

// Lease is a granted lease as the store keeps it. Expiry is not the
// store's business: the lessor above it tracks time, checkpoints the
// remaining TTL (LeaseCheckpoint) and proposes revokes.
type Lease struct {
	ID int64
	// TTL is the granted time to live, in seconds.
	TTL int64
	// RemainingTTL is the last checkpointed remaining TTL in seconds; 0
	// when never checkpointed (the lease then restarts with its full TTL).
	RemainingTTL int64
}

// leaseTable is the in-memory copy of CFLease's 'l' records, bounded by
// Config.MaxLeases. Key attachments stay on disk only.
type leaseTable struct {
	mu struct {
		sync.RWMutex
		m map[int64]Lease
	}
}

func (t *leaseTable) load(db *engine.DB) error {
	// Built aside and swapped in under the lock: Restore reloads the table
	// while readers (Leases, the metrics loop) run.
	m := make(map[int64]Lease)
	it, err := db.NewIterator(engine.CFLease, engine.IterOptions{
		Lower: []byte{leasePrefix}, Upper: []byte{leasePrefix + 1}, NoFillCache: true})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		id, err := decodeLeaseKey(it.Key())
		if err != nil {
			return err
		}
		ttl, rem, err := decodeLease(it.Value())
		if err != nil {
			return fmt.Errorf("mvcc: lease %d: %w", id, err)
		}
		m[id] = Lease{ID: id, TTL: ttl, RemainingTTL: rem}
	}
	if err := it.Error(); err != nil {
		return err
	}
	t.mu.Lock()
	t.mu.m = m
	t.mu.Unlock()
	return nil
}

func (t *leaseTable) exists(id int64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.mu.m[id]
	return ok
}

func (t *leaseTable) get(id int64) (Lease, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	l, ok := t.mu.m[id]
	return l, ok
}

func (t *leaseTable) count() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.mu.m)
}

func (t *leaseTable) set(l Lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mu.m[l.ID] = l
}

func (t *leaseTable) remove(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.mu.m, id)
}

// LeaseGrant applies raft entry index: it grants lease id with ttl
// seconds. As etcd's lessor: id 0 -> ErrLeaseNotFound, ttl above
// MaxLeaseTTL -> ErrLeaseTTLTooLarge, an existing id -> ErrLeaseExists.
// Beyond Config.MaxLeases -> ErrTooManyLeases. No revision is created.
func (s *Store) LeaseGrant(index uint64, id, ttl int64) error {
	return s.applyWrite(index, false, func(tx *writeTxn) error {
		if id == 0 {
			return ErrLeaseNotFound
		}
		if ttl > MaxLeaseTTL {
			return ErrLeaseTTLTooLarge
		}
		if s.leases.exists(id) {
			return ErrLeaseExists
		}
		if s.leases.count() >= s.cfg.MaxLeases {
			return ErrTooManyLeases
		}
		l := Lease{ID: id, TTL: ttl}
		tx.b.Put(engine.CFLease, leaseKey(id), encodeLease(l.TTL, l.RemainingTTL))
		tx.afterCommit = append(tx.afterCommit, func() { s.leases.set(l) })
		return nil
	})
}

// LeaseRevoke applies raft entry index: it deletes every key attached to
// lease id (in key order, as etcd) in one revision, and the lease. rev is
// the current revision afterwards (unchanged when no key was attached).
func (s *Store) LeaseRevoke(index uint64, id int64) (rev int64, err error) {
	err = s.applyWrite(index, false, func(tx *writeTxn) error {
		if !s.leases.exists(id) {
			return ErrLeaseNotFound
		}
		keys, err := leaseKeys(s.db, id)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if _, err := tx.deleteRangeKeys(k, nil); err != nil {
				return err
			}
		}
		tx.b.Delete(engine.CFLease, leaseKey(id))
		tx.afterCommit = append(tx.afterCommit, func() { s.leases.remove(id) })
		return nil
	})
	return s.Rev(), err
}

// LeaseCheckpoint applies raft entry index: it persists the remaining TTL
// of lease id. A missing lease is ignored, as etcd's lessor does.
func (s *Store) LeaseCheckpoint(index uint64, id, remainingTTL int64) error {
	return s.LeaseCheckpoints(index, []LeaseCheckpoint{{ID: id, RemainingTTL: remainingTTL}})
}

// LeaseCheckpoint is one lease's remaining TTL, in seconds.
type LeaseCheckpoint struct{ ID, RemainingTTL int64 }

// LeaseCheckpoints applies raft entry index, a batch of checkpoints (etcd's
// LeaseCheckpointRequest), in one atomic batch.
func (s *Store) LeaseCheckpoints(index uint64, cps []LeaseCheckpoint) error {
	return s.applyWrite(index, false, func(tx *writeTxn) error {
		for _, cp := range cps {
			l, ok := s.leases.get(cp.ID)
			if !ok {
				continue
			}
			l.RemainingTTL = cp.RemainingTTL
			tx.b.Put(engine.CFLease, leaseKey(cp.ID), encodeLease(l.TTL, l.RemainingTTL))
			tx.afterCommit = append(tx.afterCommit, func() { s.leases.set(l) })
		}
		return nil
	})
}

// Lease returns lease id.
func (s *Store) Lease(id int64) (Lease, bool) { return s.leases.get(id) }

// Leases returns every lease, by ID.
func (s *Store) Leases() []Lease {
	s.leases.mu.RLock()
	out := make([]Lease, 0, len(s.leases.mu.m))
	for _, l := range s.leases.mu.m {
		out = append(out, l)
	}
	s.leases.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LeaseKeys returns the keys attached to lease id, in key order (nil for
// an unknown lease). The caller owns the slices.
func (s *Store) LeaseKeys(id int64) ([][]byte, error) {
	return leaseKeys(s.db, id)
}

func leaseKeys(src source, id int64) ([][]byte, error) {
	prefix := attachPrefixOf(id)
	upper := attachPrefixOf(id + 1)
	if id == -1 { // the last id: its successor wraps to 0
		upper = []byte{attachPrefix + 1}
	}
	it, err := src.NewIterator(engine.CFLease, engine.IterOptions{Lower: prefix, Upper: upper})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var keys [][]byte
	for ok := it.SeekGE(prefix); ok; ok = it.Next() {
		k := it.Key()
		if !bytes.HasPrefix(k, prefix) {
			break
		}
		keys = append(keys, bytes.Clone(k[len(prefix):]))
	}
	return keys, it.Error()
}
