package engine

// #include <stdlib.h>
// #include "rocksdb/c.h"
// #include "native.h"
import "C"

import (
	"bytes"
	"fmt"
	"unsafe"

	"github.com/linxGnu/grocksdb"
)

// IterOptions bound an iterator. Lower is inclusive, Upper exclusive; nil
// or empty is unbounded. Bounds let RocksDB stop at the edge instead of stepping over
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
// created. Positioning methods return Valid(). Key, Value and ValuePrefix
// return Go memory owned by the iterator, valid until the next positioning
// call or Close; copy them to keep them. An Iterator must be closed.
//
// Each positioning method is one cgo call that also fetches the new key's
// and value's location; Key and Value then copy without calling C, and a
// scan that reads neither costs nothing beyond the step.
type Iterator struct {
	db *DB
	it *C.rocksdb_iterator_t
	ro *C.rocksdb_readoptions_t
	// bounds are C copies of IterOptions' bounds: RocksDB reads them while
	// iterating. Freed by Close.
	bounds [2]unsafe.Pointer
	// pos is C memory (freed by Close), so passing it to C costs no cgo
	// pointer check.
	pos *C.ms_pos

	key, value, prefix []byte
	keyOK, valueOK     bool
	closed             bool
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
	ro := C.rocksdb_readoptions_create()
	it := &Iterator{db: d, ro: ro, pos: (*C.ms_pos)(C.calloc(1, C.sizeof_ms_pos))}
	// An empty bound is no bound, as RocksDB reads a NULL one.
	if len(o.Lower) > 0 {
		it.bounds[0] = C.CBytes(o.Lower)
		C.rocksdb_readoptions_set_iterate_lower_bound(ro, (*C.char)(it.bounds[0]), C.size_t(len(o.Lower)))
	}
	if len(o.Upper) > 0 {
		it.bounds[1] = C.CBytes(o.Upper)
		C.rocksdb_readoptions_set_iterate_upper_bound(ro, (*C.char)(it.bounds[1]), C.size_t(len(o.Upper)))
	}
	if o.NoFillCache {
		C.rocksdb_readoptions_set_fill_cache(ro, 0)
	}
	if snap != nil {
		C.rocksdb_readoptions_set_snapshot(ro, (*C.rocksdb_snapshot_t)(rawPtr(snap)))
	}
	it.it = C.rocksdb_create_iterator_cf(d.c.db, ro, d.c.cfs[cf])
	d.openIters.Add(1)
	return it, nil
}

func (it *Iterator) moved() bool {
	it.keyOK, it.valueOK = false, false
	return it.pos.valid != 0
}

// First moves to the first key.
func (it *Iterator) First() bool { C.ms_iter_first(it.it, it.pos); return it.moved() }

// Last moves to the last key.
func (it *Iterator) Last() bool { C.ms_iter_last(it.it, it.pos); return it.moved() }

// SeekGE moves to the first key >= key.
func (it *Iterator) SeekGE(key []byte) bool {
	C.ms_iter_seek(it.it, bytesPtr(key), C.size_t(len(key)), it.pos)
	return it.moved()
}

// SeekLE moves to the last key <= key.
func (it *Iterator) SeekLE(key []byte) bool {
	C.ms_iter_seek_for_prev(it.it, bytesPtr(key), C.size_t(len(key)), it.pos)
	return it.moved()
}

// SeekLT moves to the last key < key.
func (it *Iterator) SeekLT(key []byte) bool {
	if it.SeekLE(key) && bytes.Equal(it.Key(), key) {
		return it.Prev()
	}
	return it.Valid()
}

// Next moves to the next key.
func (it *Iterator) Next() bool { C.ms_iter_next(it.it, it.pos); return it.moved() }

// Prev moves to the previous key.
func (it *Iterator) Prev() bool { C.ms_iter_prev(it.it, it.pos); return it.moved() }

// Valid reports whether the iterator is positioned at a key.
func (it *Iterator) Valid() bool { return it.pos.valid != 0 }

// Key returns the current key. REQUIRES: Valid().
func (it *Iterator) Key() []byte {
	if !it.keyOK {
		it.key = append(it.key[:0], cBytes(it.pos.key, it.pos.klen)...)
		it.keyOK = true
	}
	return it.key
}

// Value returns the current value. REQUIRES: Valid().
func (it *Iterator) Value() []byte {
	if !it.valueOK {
		it.value = append(it.value[:0], cBytes(it.pos.val, it.pos.vlen)...)
		it.valueOK = true
	}
	return it.value
}

// ValueLen returns the length of the current value without copying it.
// REQUIRES: Valid().
func (it *Iterator) ValueLen() int { return int(it.pos.vlen) }

// ValuePrefix returns the first min(n, ValueLen()) bytes of the current
// value, copying only those: for scans that need a value's header but
// not its body. REQUIRES: Valid().
func (it *Iterator) ValuePrefix(n int) []byte {
	if it.valueOK {
		return it.value[:min(n, len(it.value))]
	}
	it.prefix = append(it.prefix[:0], cBytes(it.pos.val, min(C.size_t(max(n, 0)), it.pos.vlen))...)
	return it.prefix
}

// Error returns the error that stopped the iteration, if any. An iterator
// that is not Valid either reached its bounds (nil) or failed.
func (it *Iterator) Error() error {
	var cerr *C.char
	C.rocksdb_iter_get_error(it.it, &cerr)
	if err := cError(cerr); err != nil {
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
	C.rocksdb_iter_destroy(it.it)
	C.rocksdb_readoptions_destroy(it.ro)
	for i, b := range it.bounds {
		if b != nil {
			C.free(b)
			it.bounds[i] = nil
		}
	}
	C.free(unsafe.Pointer(it.pos))
	it.it, it.ro, it.pos = nil, nil, nil
	it.db.openIters.Add(-1)
	return err
}

// Snapshot is a consistent, read-only view of the whole database (every
// column family) at the moment it was taken. It must be closed.
type Snapshot struct {
	db     *DB
	snap   *grocksdb.Snapshot
	ro     *grocksdb.ReadOptions
	cro    *C.rocksdb_readoptions_t // ro's C object (native.go)
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
	s.cro = (*C.rocksdb_readoptions_t)(rawPtr(s.ro))
	d.openIters.Add(1)
	return s, nil
}

// Get reads key of cf as of the snapshot; see DB.Get.
func (s *Snapshot) Get(cf CF, key []byte) (value []byte, found bool, err error) {
	return s.GetAppend(nil, cf, key)
}

// GetAppend reads key of cf as of the snapshot; see DB.GetAppend.
func (s *Snapshot) GetAppend(dst []byte, cf CF, key []byte) (value []byte, found bool, err error) {
	if err := s.db.acquire(); err != nil {
		return dst, false, err
	}
	defer s.db.release()
	return s.db.get(dst, s.cro, cf, key)
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
