package mvcc

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"github.com/metastore/metastore/engine"
)

// source is what a reader reads from: the live engine (the apply goroutine,
// and concurrent readers that tolerate the engine moving ahead of them) or
// an engine snapshot.
type source interface {
	Get(cf engine.CF, key []byte) ([]byte, bool, error)
	NewIterator(cf engine.CF, o engine.IterOptions) (*engine.Iterator, error)
}

// ctxCheckKeys is how many keys a scan visits between context checks.
const ctxCheckKeys = 1024

// reader resolves keys at engine revision rev: for each key, the newest
// version with mod revision <= rev. The latest version comes from CFKV;
// when it is newer than rev (a write committed after the reader chose
// rev), the reader seeks CFHistory, whose versions sort newest first.
//
// Consistency without locks: history versions are only added (by writes,
// which move the superseded latest version there in the same batch) or
// deleted (by the compactor, and only versions no read at or above the
// compaction revision needs). So a history iterator opened after the CFKV
// read holds every version the CFKV read can point to, unless a
// compaction above rev was scheduled meanwhile. usedHistory tells the
// caller to re-check the compaction revision after the read.
//
// Records returned alias the reader's buffers and are valid until the next
// call.
type reader struct {
	src         source
	rev         int64
	hist        *engine.Iterator
	histKey     []byte
	usedHistory bool
	ov          *overlay // pending writes at rev+1 seen by this reader; nil if none
}

func (r *reader) close() {
	if r.hist != nil {
		_ = r.hist.Close()
		r.hist = nil
	}
}

// get returns key's version at the reader's revision; ok is false when the
// key does not exist there (never written, or deleted).
func (r *reader) get(key []byte) (rec record, ok bool, err error) {
	if r.ov != nil {
		if e, found := r.ov.get(key); found {
			return e.rec, !e.rec.tombstone, nil
		}
	}
	v, found, err := r.src.Get(engine.CFKV, key)
	if err != nil || !found {
		return record{}, false, err
	}
	latest, err := decodeRecord(v)
	if err != nil {
		return record{}, false, fmt.Errorf("mvcc: kv %q: %w", key, err)
	}
	return r.resolve(key, latest)
}

// resolve returns the version of key visible at r.rev given its latest one.
func (r *reader) resolve(key []byte, latest record) (record, bool, error) {
	if latest.mod.Main <= r.rev {
		return latest, !latest.tombstone, nil
	}
	rec, found, err := r.historyAt(key, r.rev)
	if err != nil || !found {
		return record{}, false, err
	}
	return rec, !rec.tombstone, nil
}

// historyAt returns the newest history version of key with main revision
// <= rev.
func (r *reader) historyAt(key []byte, rev int64) (record, bool, error) {
	r.usedHistory = true
	if r.hist == nil {
		it, err := r.src.NewIterator(engine.CFHistory, engine.IterOptions{})
		if err != nil {
			return record{}, false, err
		}
		r.hist = it
	}
	r.histKey = appendHistoryKey(r.histKey[:0], key, rev)
	prefix := r.histKey[:len(r.histKey)-histRevBytes]
	if !r.hist.SeekGE(r.histKey) {
		return record{}, false, r.hist.Error()
	}
	k := r.hist.Key()
	if !bytes.HasPrefix(k, prefix) || len(k) != len(r.histKey) {
		return record{}, false, nil
	}
	rec, err := decodeRecord(r.hist.Value())
	if err != nil {
		return record{}, false, fmt.Errorf("mvcc: history %q: %w", key, err)
	}
	return rec, true, nil
}

// scan calls fn for every key in [key, end) that exists at the reader's
// revision, in key order; an empty non-nil end means no upper bound (etcd's
// ">= key"). fn returns false to stop.
func (r *reader) scan(ctx context.Context, key, end []byte, fn func(key []byte, rec *record) bool) error {
	if len(end) > 0 && bytes.Compare(key, end) >= 0 {
		return nil
	}
	opts := engine.IterOptions{Lower: key}
	if len(end) > 0 {
		opts.Upper = end
	}
	it, err := r.src.NewIterator(engine.CFKV, opts)
	if err != nil {
		return err
	}
	defer it.Close()
	var ovKeys []string
	if r.ov != nil {
		ovKeys = r.ov.keysIn(key, end)
	}
	valid := it.SeekGE(key)
	for n := 0; ; n++ {
		if n%ctxCheckKeys == ctxCheckKeys-1 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("mvcc: range: %w", err)
			}
		}
		var k []byte
		fromOverlay := false
		switch {
		case valid && len(ovKeys) > 0:
			k = it.Key()
			if c := bytes.Compare([]byte(ovKeys[0]), k); c <= 0 {
				fromOverlay = true
				if c == 0 {
					valid = it.Next() // the pending write hides the engine's
				}
			}
		case valid:
			k = it.Key()
		case len(ovKeys) > 0:
			fromOverlay = true
		default:
			return it.Error()
		}
		if fromOverlay {
			ok := ovKeys[0]
			ovKeys = ovKeys[1:]
			e, _ := r.ov.get([]byte(ok))
			if e.rec.tombstone {
				continue
			}
			rec := e.rec
			if !fn([]byte(ok), &rec) {
				return nil
			}
			continue
		}
		latest, err := decodeRecord(it.Value())
		if err != nil {
			return fmt.Errorf("mvcc: kv %q: %w", k, err)
		}
		rec, live, err := r.resolve(k, latest)
		if err != nil {
			return err
		}
		if live && !fn(k, &rec) {
			return nil
		}
		valid = it.Next()
	}
}

// overlay holds a txn's pending writes so the txn's reads see them.
type overlay struct {
	m    map[string]*ovEntry
	keys []string // sorted
}

type ovEntry struct {
	rec    record  // the new version; a tombstone for a delete
	event  int     // index of its event in the txn
	before *record // the key's live version before the txn, if any
}

func (o *overlay) get(key []byte) (*ovEntry, bool) {
	if o == nil {
		return nil, false
	}
	e, ok := o.m[string(key)]
	return e, ok
}

func (o *overlay) set(key []byte, e ovEntry) {
	if o.m == nil {
		o.m = make(map[string]*ovEntry)
	}
	k := string(key)
	if old, ok := o.m[k]; ok {
		*old = e
		return
	}
	o.m[k] = &e
	i := sort.SearchStrings(o.keys, k)
	o.keys = append(o.keys, "")
	copy(o.keys[i+1:], o.keys[i:])
	o.keys[i] = k
}

func (o *overlay) len() int {
	if o == nil {
		return 0
	}
	return len(o.keys)
}

// keysIn returns the pending keys in [key, end) (end empty: unbounded).
func (o *overlay) keysIn(key, end []byte) []string {
	i := sort.SearchStrings(o.keys, string(key))
	j := len(o.keys)
	if len(end) > 0 {
		j = sort.SearchStrings(o.keys, string(end))
	}
	if j < i {
		return nil
	}
	return o.keys[i:j]
}
