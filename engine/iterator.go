package engine

import (
	"bytes"
	"fmt"

	"github.com/linxGnu/grocksdb"
)

// IterOptions bound an iterator. Lower is inclusive, Upper exclusive; nil is
// unbounded. Bounds let RocksDB stop at the edge instead of stepping over
// tombstones beyond it, so set them whenever the range is known.
type IterOptions struct {
	Lower, Upper []byte
	// NoFillCache keeps blocks read by the iterator out of the block cache:
	// set it for one-off scans (compaction, checks, snapshots) so they do
	// not evict the working set.
	NoFillCache bool
}

// Iterator walks the keys of one column family in order over a consistent
// view: the state of the database when the iterator (or its snapshot) was
// created. Positioning methods return Valid(). Key and Value return Go
// memory owned by the iterator, valid until the next positioning call or
// Close; copy them to keep them. An Iterator must be closed.
type Iterator struct {
	db     *DB
	it     *grocksdb.Iterator
	ro     *grocksdb.ReadOptions
	bounds [2][]byte // kept reachable: RocksDB reads them while iterating

	key, value     []byte
	keyOK, valueOK bool
	closed         bool
}

// NewIterator returns an iterator over cf at the current state.
func (d *DB) NewIterator(cf CF, o IterOptions) (*Iterator, error) {
	return d.newIterator(cf, o, nil)
}

func (d *DB) newIterator(cf CF, o IterOptions, snap *grocksdb.Snapshot) (*Iterator, error) {
	if err := d.acquire(); err != nil {
		return nil, err
	}
	defer d.release()
	ro := grocksdb.NewDefaultReadOptions()
	it := &Iterator{db: d, ro: ro}
	if o.Lower != nil {
		it.bounds[0] = bytes.Clone(o.Lower)
		ro.SetIterateLowerBound(it.bounds[0])
	}
	if o.Upper != nil {
		it.bounds[1] = bytes.Clone(o.Upper)
		ro.SetIterateUpperBound(it.bounds[1])
	}
	if o.NoFillCache {
		ro.SetFillCache(false)
	}
	if snap != nil {
		ro.SetSnapshot(snap)
	}
	it.it = d.db.NewIteratorCF(ro, d.cfs[cf])
	d.openIters.Add(1)
	return it, nil
}

func (it *Iterator) moved() bool {
	it.keyOK, it.valueOK = false, false
	return it.it.Valid()
}

// First moves to the first key.
func (it *Iterator) First() bool { it.it.SeekToFirst(); return it.moved() }

// Last moves to the last key.
func (it *Iterator) Last() bool { it.it.SeekToLast(); return it.moved() }

// SeekGE moves to the first key >= key.
func (it *Iterator) SeekGE(key []byte) bool { it.it.Seek(key); return it.moved() }

// SeekLE moves to the last key <= key.
func (it *Iterator) SeekLE(key []byte) bool { it.it.SeekForPrev(key); return it.moved() }

// SeekLT moves to the last key < key.
func (it *Iterator) SeekLT(key []byte) bool {
	it.it.SeekForPrev(key)
	if it.moved() && bytes.Equal(it.Key(), key) {
		return it.Prev()
	}
	return it.Valid()
}

// Next moves to the next key.
func (it *Iterator) Next() bool { it.it.Next(); return it.moved() }

// Prev moves to the previous key.
func (it *Iterator) Prev() bool { it.it.Prev(); return it.moved() }

// Valid reports whether the iterator is positioned at a key.
func (it *Iterator) Valid() bool { return it.it.Valid() }

// Key returns the current key. REQUIRES: Valid().
func (it *Iterator) Key() []byte {
	if !it.keyOK {
		s := it.it.Key()
		it.key = append(it.key[:0], s.Data()...)
		it.keyOK = true
	}
	return it.key
}

// Value returns the current value. REQUIRES: Valid().
func (it *Iterator) Value() []byte {
	if !it.valueOK {
		s := it.it.Value()
		it.value = append(it.value[:0], s.Data()...)
		it.valueOK = true
	}
	return it.value
}

// Error returns the error that stopped the iteration, if any. An iterator
// that is not Valid either reached its bounds (nil) or failed.
func (it *Iterator) Error() error {
	if err := it.it.Err(); err != nil {
		return fmt.Errorf("engine: iterator: %w", err)
	}
	return nil
}

// Close releases the iterator. Closing twice is a no-op.
func (it *Iterator) Close() error {
	if it.closed {
		return nil
	}
	it.closed = true
	err := it.Error()
	it.it.Close()
	it.ro.Destroy()
	it.db.openIters.Add(-1)
	return err
}

// Snapshot is a consistent, read-only view of the whole database (every
// column family) at the moment it was taken. It must be closed.
type Snapshot struct {
	db     *DB
	snap   *grocksdb.Snapshot
	ro     *grocksdb.ReadOptions
	closed bool
}

// NewSnapshot takes a snapshot of the current state.
func (d *DB) NewSnapshot() (*Snapshot, error) {
	if err := d.acquire(); err != nil {
		return nil, err
	}
	defer d.release()
	s := &Snapshot{db: d, snap: d.db.NewSnapshot(), ro: grocksdb.NewDefaultReadOptions()}
	s.ro.SetSnapshot(s.snap)
	d.openIters.Add(1)
	return s, nil
}

// Get reads key of cf as of the snapshot; see DB.Get.
func (s *Snapshot) Get(cf CF, key []byte) (value []byte, found bool, err error) {
	if err := s.db.acquire(); err != nil {
		return nil, false, err
	}
	defer s.db.release()
	return s.db.get(s.ro, cf, key)
}

// NewIterator returns an iterator over cf as of the snapshot.
func (s *Snapshot) NewIterator(cf CF, o IterOptions) (*Iterator, error) {
	return s.db.newIterator(cf, o, s.snap)
}

// Close releases the snapshot. Closing twice is a no-op.
func (s *Snapshot) Close() {
	if s.closed {
		return
	}
	s.closed = true
	s.db.closeMu.RLock()
	defer s.db.closeMu.RUnlock()
	s.ro.Destroy()
	s.db.db.ReleaseSnapshot(s.snap)
	s.db.openIters.Add(-1)
}
