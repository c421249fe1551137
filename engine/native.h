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

// ---- Counting runs (count.go) ----
//
// ms_header_rule is engine.HeaderRule in C: the value header ms_classify
// reads. A header is a flags byte (0, or dead_flag for a dead version),
// then `fields` minimal uvarints, field 0 being the version's revision
// (1 <= rev <= 2^63-1). Bit i of each mask stands for field i. The rule's
// owner (mvcc, for its record header in mvcc/encoding.go) fills it in;
// engine knows no more of the format than this.
typedef struct {
	unsigned char dead_flag;
	int fields;                 // 1..MS_HEADER_MAX_FIELDS
	unsigned int int63;         // fields that must be <= 2^63-1
	unsigned int dead_zero;     // fields that are 0 in a dead version
	unsigned int live_nonzero;  // fields that are >= 1 in a live version
	unsigned int live_le_rev;   // fields that are <= field 0 in a live version
} ms_header_rule;

#define MS_HEADER_MAX_FIELDS 8

// ms_classify's answers (engine.HeaderClass).
enum {
	MS_LIVE = 0,      // well formed, live, revision <= rev
	MS_DEAD = 1,      // well formed, dead, revision <= rev
	MS_NEWER = 2,     // well formed, revision > rev
	MS_MALFORMED = 3, // breaks the rule: short, unknown flags, bad or
	                  // non-minimal uvarint, a field out of range
};

// ms_uvarint reads a minimal uvarint at *off, as Go's binary.Uvarint
// plus the minimality check of mvcc's uvarint: at most 10 bytes, the 10th
// at most 1, and the last byte non-zero unless it is the only one.
static inline int ms_uvarint(const unsigned char* b, size_t len, size_t* off, unsigned long long* out) {
	unsigned long long v = 0;
	size_t o = *off;
	for (int i = 0; i < 10; i++) {
		if (o + i >= len) {
			return 0;
		}
		unsigned char c = b[o + i];
		if (i == 9 && c > 1) {
			return 0;
		}
		if (c < 0x80) {
			if (c == 0 && i > 0) {
				return 0;
			}
			*out = v | ((unsigned long long)c << (7 * i));
			*off = o + i + 1;
			return 1;
		}
		v |= (unsigned long long)(c & 0x7f) << (7 * i);
	}
	return 0;
}

// ms_classify applies rule r to a value read at revision rev.
static inline int ms_classify(const ms_header_rule* r, long long rev, const char* val, size_t vlen) {
	const unsigned char* b = (const unsigned char*)val;
	unsigned long long f[MS_HEADER_MAX_FIELDS];
	if (vlen == 0 || r->fields < 1 || r->fields > MS_HEADER_MAX_FIELDS) {
		return MS_MALFORMED;
	}
	int dead = b[0] == r->dead_flag;
	if (b[0] != 0 && !dead) {
		return MS_MALFORMED;
	}
	size_t off = 1;
	for (int i = 0; i < r->fields; i++) {
		if (!ms_uvarint(b, vlen, &off, &f[i])) {
			return MS_MALFORMED;
		}
	}
	const unsigned long long max63 = 0x7fffffffffffffffULL;
	if (f[0] < 1 || f[0] > max63) {
		return MS_MALFORMED;
	}
	for (int i = 1; i < r->fields; i++) {
		unsigned int bit = 1u << i;
		if ((r->int63 & bit) && f[i] > max63) {
			return MS_MALFORMED;
		}
		if (dead) {
			if ((r->dead_zero & bit) && f[i] != 0) {
				return MS_MALFORMED;
			}
		} else if (((r->live_nonzero & bit) && f[i] == 0) || ((r->live_le_rev & bit) && f[i] > f[0])) {
			return MS_MALFORMED;
		}
	}
	if ((long long)f[0] > rev) {
		return MS_NEWER;
	}
	return dead ? MS_DEAD : MS_LIVE;
}

// ms_count_result is ms_iter_count_run's answer (engine.CountResult).
typedef struct {
	size_t live;  // keys classified live
	size_t keys;  // keys classified live or dead, and stepped past
	int stop;     // why the run ended: an MS_RUN_* value
} ms_count_result;

enum {
	MS_RUN_MAX = 0,       // max keys stepped past; on the next key
	MS_RUN_EXHAUSTED = 1, // iterator invalid: out of bounds, or failed
	MS_RUN_STOP_KEY = 2,  // on the first key >= stop
	MS_RUN_NEWER = 3,     // on a key whose value is MS_NEWER
	MS_RUN_MALFORMED = 4, // on a key whose value is MS_MALFORMED
};

// ms_iter_count_run classifies the keys from the iterator's position on,
// counting the live ones and stepping past the live and dead ones, until
// one of the MS_RUN_* conditions; stop (has_stop) is compared as RocksDB's
// bytewise comparator does. It leaves p at the final position.
static ms_count_result ms_iter_count_run(rocksdb_iterator_t* it, ms_pos* p, ms_header_rule r, long long rev,
		const char* stop, size_t stoplen, int has_stop, size_t max) {
	ms_count_result res = {0, 0, MS_RUN_MAX};
	ms_enter();
	for (; res.keys < max; res.keys++) {
		if (!rocksdb_iter_valid(it)) {
			res.stop = MS_RUN_EXHAUSTED;
			break;
		}
		if (has_stop) {
			size_t klen;
			const char* k = rocksdb_iter_key(it, &klen);
			size_t n = klen < stoplen ? klen : stoplen;
			int c = n > 0 ? memcmp(k, stop, n) : 0;
			if (c > 0 || (c == 0 && klen >= stoplen)) {
				res.stop = MS_RUN_STOP_KEY;
				break;
			}
		}
		size_t vlen;
		const char* v = rocksdb_iter_value(it, &vlen);
		int cls = ms_classify(&r, rev, v, vlen);
		if (cls == MS_NEWER || cls == MS_MALFORMED) {
			res.stop = cls == MS_NEWER ? MS_RUN_NEWER : MS_RUN_MALFORMED;
			break;
		}
		res.live += cls == MS_LIVE;
		rocksdb_iter_next(it);
	}
	if (res.stop == MS_RUN_MAX && !rocksdb_iter_valid(it)) {
		res.stop = MS_RUN_EXHAUSTED;
	}
	ms_iter_pos(it, p);
	return res;
}

// ms_classify_value is ms_classify for a single value (HeaderRule.Classify).
static int ms_classify_value(ms_header_rule r, long long rev, const char* val, size_t vlen) {
	return ms_classify(&r, rev, val, vlen);
}

#endif
