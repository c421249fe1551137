package engine

// The hot paths (point gets, iterator steps, batch writes) call RocksDB's C
// API directly instead of through grocksdb, which allocates a Go object per
// call (a *Slice per Iterator.Key, a handle per GetPinnedCF) and needs
// several cgo transitions for what is one step here: an iterator move
// returns its validity, key and value in one call.
//
// The C objects (database, column family handles, read and write options,
// snapshots) are still created and destroyed through grocksdb; rawPtr reads
// the C pointer grocksdb keeps as the first field of each of them
// (grocksdb v1.7.14; init checks the layout and panics if it changes).
//
// C memory never escapes: Go reads RocksDB's key and value bytes through
// the pointers of the current position (ms_pos) only to copy them into Go
// buffers, before the iterator moves.

// #cgo LDFLAGS: -lrocksdb
// #include <stdlib.h>
// #include "rocksdb/c.h"
// #include "native.h"
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/linxGnu/grocksdb"
)

func init() {
	// rawPtr depends on grocksdb's layout: fail at start-up, not with a
	// wild pointer, if an upgrade changes it.
	for _, v := range []any{grocksdb.DB{}, grocksdb.ColumnFamilyHandle{}, grocksdb.ReadOptions{},
		grocksdb.WriteOptions{}, grocksdb.Snapshot{}} {
		t := reflect.TypeOf(v)
		if t.NumField() == 0 || t.Field(0).Name != "c" || t.Field(0).Type.Kind() != reflect.Pointer || t.Field(0).Offset != 0 {
			panic(fmt.Sprintf("engine: grocksdb.%s no longer starts with its C pointer", t.Name()))
		}
	}
}

// rawPtr returns the C object behind a grocksdb object (its first field).
func rawPtr[T any](p *T) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(p)) }

// native holds the raw C pointers of an open DB, taken once at Open.
type native struct {
	db       *C.rocksdb_t
	cfs      [NumCFs]*C.rocksdb_column_family_handle_t
	readOpts *C.rocksdb_readoptions_t
	syncWO   *C.rocksdb_writeoptions_t
	noSyncWO *C.rocksdb_writeoptions_t
}

func (d *DB) initNative() {
	d.c.db = (*C.rocksdb_t)(rawPtr(d.db))
	for cf := range d.cfs {
		d.c.cfs[cf] = (*C.rocksdb_column_family_handle_t)(rawPtr(d.cfs[cf]))
	}
	d.c.readOpts = (*C.rocksdb_readoptions_t)(rawPtr(d.readOpts))
	d.c.syncWO = (*C.rocksdb_writeoptions_t)(rawPtr(d.syncWO))
	d.c.noSyncWO = (*C.rocksdb_writeoptions_t)(rawPtr(d.noSyncWO))
}

// cError converts and frees an error string set by RocksDB.
func cError(e *C.char) error {
	if e == nil {
		return nil
	}
	err := errors.New(C.GoString(e))
	C.rocksdb_free(unsafe.Pointer(e))
	return err
}

// bytesPtr returns a C view of b's first byte (nil for an empty slice).
// The memory stays Go's: C may only use it for the duration of the call.
func bytesPtr(b []byte) *C.char {
	if len(b) == 0 {
		return nil
	}
	return (*C.char)(unsafe.Pointer(unsafe.SliceData(b)))
}

// cBytes views n bytes of C memory at p; the caller copies them out before
// RocksDB may free them.
func cBytes(p *C.char, n C.size_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), int(n))
}

// getAppend appends the value of key to dst. REQUIRES: closeMu read-held.
func (d *DB) getAppend(dst []byte, ro *C.rocksdb_readoptions_t, cf CF, key []byte) ([]byte, bool, error) {
	free := dst[len(dst):cap(dst)]
	r := C.ms_get(d.c.db, ro, d.c.cfs[cf], bytesPtr(key), C.size_t(len(key)),
		bytesPtr(free), C.size_t(len(free)))
	if err := cError(r.err); err != nil {
		return dst, false, fmt.Errorf("engine: get %s: %w", cf, err)
	}
	if r.found == 0 {
		return dst, false, nil
	}
	n := int(r.vlen)
	if r.pinned == nil {
		return dst[:len(dst)+n], true, nil
	}
	out := append(dst, make([]byte, n)...)
	C.ms_copy_pinned(r.pinned, bytesPtr(out[len(dst):]))
	return out, true, nil
}

// writeRep writes a batch encoding. REQUIRES: closeMu read-held.
func (d *DB) writeRep(rep []byte, sync bool) error {
	wo := d.c.noSyncWO
	if sync {
		wo = d.c.syncWO
	}
	return cError(C.ms_write(d.c.db, wo, bytesPtr(rep), C.size_t(len(rep))))
}
