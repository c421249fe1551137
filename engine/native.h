// C helpers of package engine (see native.go). Static, so each cgo file
// that includes this header gets its own copy.

#ifndef METASTORE_ENGINE_NATIVE_H
#define METASTORE_ENGINE_NATIVE_H
#include <string.h>
#include "rocksdb/c.h"

// ms_enter runs at the start of every helper. RocksDB counts each key
// comparison, block read and so on in a thread-local PerfContext unless
// the thread's perf level is "disable"; MetaStore never reads those
// counters, and on the write path they cost a few percent (every count is
// a __tls_get_addr call into the shared library). The level is per OS
// thread, so each thread that calls in switches it off once.
static __thread int ms_perf_off;

static inline void ms_enter(void) {
	if (!ms_perf_off) {
		rocksdb_set_perf_level(rocksdb_disable);
		ms_perf_off = 1;
	}
}

// ms_pos is an iterator position: pointers into RocksDB's memory, valid
// until the iterator moves or is destroyed.
typedef struct {
	const char* key;
	size_t klen;
	const char* val;
	size_t vlen;
	int valid;
} ms_pos;

static void ms_iter_pos(rocksdb_iterator_t* it, ms_pos* p) {
	p->valid = rocksdb_iter_valid(it) != 0;
	if (p->valid) {
		p->key = rocksdb_iter_key(it, &p->klen);
		p->val = rocksdb_iter_value(it, &p->vlen);
	} else {
		p->key = NULL;
		p->klen = 0;
		p->val = NULL;
		p->vlen = 0;
	}
}

static void ms_iter_first(rocksdb_iterator_t* it, ms_pos* p) {
	ms_enter();
	rocksdb_iter_seek_to_first(it);
	ms_iter_pos(it, p);
}
static void ms_iter_last(rocksdb_iterator_t* it, ms_pos* p) {
	ms_enter();
	rocksdb_iter_seek_to_last(it);
	ms_iter_pos(it, p);
}
static void ms_iter_next(rocksdb_iterator_t* it, ms_pos* p) {
	ms_enter();
	rocksdb_iter_next(it);
	ms_iter_pos(it, p);
}
static void ms_iter_prev(rocksdb_iterator_t* it, ms_pos* p) {
	ms_enter();
	rocksdb_iter_prev(it);
	ms_iter_pos(it, p);
}
static void ms_iter_seek(rocksdb_iterator_t* it, const char* k, size_t klen, ms_pos* p) {
	ms_enter();
	rocksdb_iter_seek(it, k, klen);
	ms_iter_pos(it, p);
}
static void ms_iter_seek_for_prev(rocksdb_iterator_t* it, const char* k, size_t klen, ms_pos* p) {
	ms_enter();
	rocksdb_iter_seek_for_prev(it, k, klen);
	ms_iter_pos(it, p);
}

// ms_get_result is ms_get's answer, returned by value so that Go passes
// no pointers to its own variables (which would escape to the heap).
typedef struct {
	rocksdb_pinnableslice_t* pinned; // set when the value did not fit
	size_t vlen;
	int found;
	char* err;
} ms_get_result;

// ms_get looks key up. Absent: found = 0. Present and no longer than
// bufcap: copies the value into buf and frees everything. Longer: returns
// the pinned value for ms_copy_pinned, which frees it.
static ms_get_result ms_get(rocksdb_t* db, const rocksdb_readoptions_t* ro,
		rocksdb_column_family_handle_t* cf, const char* key, size_t klen,
		char* buf, size_t bufcap) {
	ms_get_result r = {NULL, 0, 0, NULL};
	ms_enter();
	rocksdb_pinnableslice_t* h = rocksdb_get_pinned_cf(db, ro, cf, key, klen, &r.err);
	if (h == NULL) {
		return r;
	}
	r.found = 1;
	const char* v = rocksdb_pinnableslice_value(h, &r.vlen);
	if (r.vlen > bufcap) {
		r.pinned = h;
		return r;
	}
	if (r.vlen > 0) {
		memcpy(buf, v, r.vlen);
	}
	rocksdb_pinnableslice_destroy(h);
	return r;
}

static void ms_copy_pinned(rocksdb_pinnableslice_t* h, char* dst) {
	size_t n;
	const char* v = rocksdb_pinnableslice_value(h, &n);
	if (n > 0) {
		memcpy(dst, v, n);
	}
	rocksdb_pinnableslice_destroy(h);
}

// ms_write writes a batch given in RocksDB's WriteBatch encoding and
// returns RocksDB's error, if any.
static char* ms_write(rocksdb_t* db, const rocksdb_writeoptions_t* wo, const char* rep, size_t len) {
	char* err = NULL;
	ms_enter();
	rocksdb_writebatch_t* wb = rocksdb_writebatch_create_from(rep, len);
	rocksdb_write(db, wo, wb, &err);
	rocksdb_writebatch_destroy(wb);
	return err;
}

#endif
