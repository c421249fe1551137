package mvcc

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metastore/metastore/engine"
)

// source is what a reader reads from: the live engine (the apply goroutine,
// and concurrent readers that tolerate the engine moving ahead of them) or
// an engine snapshot.
type source interface {
	Get(cf engine.CF, key []byte) ([]byte, bool, error)
	GetAppend(dst []byte, cf engine.CF, key []byte) ([]byte, bool, error)
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
	// cidx, if set, counts what scan would walk past its full keys
	// (countindex.go). Never set with ov.
	cidx *countIndex
	// buf holds the CFKV value get read last; records get returns alias
	// it. A caller that keeps such a record's value sets buf to nil.
	buf []byte
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
	v, found, err := r.src.GetAppend(r.buf[:0], engine.CFKV, key)
	r.buf = v
	if err != nil || !found {
		return record{}, false, err
	}
	latest, err := decodeRecord(v)
	if err != nil {
		return record{}, false, fmt.Errorf("mvcc: kv %q: %w", key, err)
	}
	return r.resolve(key, latest)
}

// takeKV returns rec, which get just returned, as a KeyValue holding
// ownKey, a copy of the key that the caller gives away. A value read from
// CFKV is the tail of r.buf: the KeyValue takes it and r.buf is dropped,
// saving a copy; any other value is copied.
func (r *reader) takeKV(ownKey []byte, rec *record) mvccpb.KeyValue {
	kv := mvccpb.KeyValue{
		Key:            ownKey,
		CreateRevision: rec.create,
		ModRevision:    rec.mod.Main,
		Version:        rec.version,
		Lease:          rec.lease,
	}
	switch v := rec.value; {
	case len(v) == 0:
	case len(r.buf) > 0 && &v[len(v)-1] == &r.buf[len(r.buf)-1]:
		kv.Value = v[:len(v):len(v)]
		r.buf = nil
	default:
		kv.Value = bytes.Clone(v)
	}
	return kv
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

// scan visits the keys in [key, end) that exist at the reader's revision,
// in key order, and returns how many it found; an empty non-nil end means
// no upper bound (etcd's ">= key"). fn is called with the first fullKeys
// of them (fullKeys < 0: all); the rest are only counted, from their
// record header, without copying their keys or values: runs of engine keys
// between pending writes in one cgo call each (engine.CountRun). fn
// returns false to stop the scan, which then returns the count so far.
func (r *reader) scan(ctx context.Context, key, end []byte, fullKeys int, fn func(key []byte, rec *record) bool) (count int, err error) {
	if len(end) > 0 && bytes.Compare(key, end) >= 0 {
		return 0, nil
	}
	opts := engine.IterOptions{Lower: key}
	if len(end) > 0 {
		opts.Upper = end
	}
	it, err := r.src.NewIterator(engine.CFKV, opts)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var ovKeys []*ovEntry
	if r.ov != nil {
		ovKeys = r.ov.keysIn(key, end)
	}
	full := func() bool { return fullKeys < 0 || count < fullKeys }
	var rec record // handed to fn by pointer: one variable, not one per key
	valid := it.SeekGE(key)
	for n := 0; ; n++ {
		if n%ctxCheckKeys == ctxCheckKeys-1 {
			if err := ctx.Err(); err != nil {
				return count, fmt.Errorf("mvcc: range: %w", err)
			}
		}
		fromOverlay := false
		switch {
		case valid && len(ovKeys) > 0:
			if c := bytes.Compare(ovKeys[0].key, it.Key()); c <= 0 {
				fromOverlay = true
				if c == 0 {
					valid = it.Next() // the pending write hides the engine's
				}
			}
		case valid:
		case len(ovKeys) > 0:
			fromOverlay = true
		default:
			return count, it.Error()
		}
		if fromOverlay {
			e := ovKeys[0]
			ovKeys = ovKeys[1:]
			if e.rec.tombstone {
				continue
			}
			rec = e.rec
			wantFull := full()
			count++
			if wantFull && !fn(e.key, &rec) {
				return count, nil
			}
			continue
		}
		if !full() && r.cidx != nil && len(ovKeys) == 0 {
			rest, ok, err := r.countRest(ctx, bytes.Clone(it.Key()), end)
			if err != nil || ok {
				return count + rest, err
			}
			// The index would not save work: walk, without asking again.
			ci := r.cidx
			r.cidx = nil
			defer func() { r.cidx = ci }()
		}
		if !full() {
			// Count engine keys in C, up to the next pending write and
			// the next context check (the keys n up to the next n with
			// n%ctxCheckKeys == ctxCheckKeys-1, as one per iteration
			// would), until one needs Go.
			var stop []byte
			if len(ovKeys) > 0 {
				stop = ovKeys[0].key
			}
			run := it.CountRun(&recordHeaderRule, r.rev, stop, ctxCheckKeys-(n+1)%ctxCheckKeys)
			count += run.Live
			n += run.Keys - 1 // the run took the keys n, n+1, ...; the loop's n++ passes the last
			if run.Stop != engine.RunNewer && run.Stop != engine.RunMalformed {
				valid = it.Valid()
				continue
			}
			// Changed after r.rev (resolved from history) or malformed
			// (reported): a key of its own, on which the run stopped.
			n++
			live, err := r.liveAtHeader(it)
			if err != nil {
				return count, err
			}
			if live {
				count++
			}
			valid = it.Next()
			continue
		}
		k := it.Key()
		latest, err := decodeRecord(it.Value())
		if err != nil {
			return count, fmt.Errorf("mvcc: kv %q: %w", k, err)
		}
		var live bool
		rec, live, err = r.resolve(k, latest)
		if err != nil {
			return count, err
		}
		if live {
			count++
			if !fn(k, &rec) {
				return count, nil
			}
		}
		valid = it.Next()
	}
}

// recordHeaderRule is the record header of encoding.go (see record and
// decodeRecordHeader) as engine.CountRun reads it, in C, to count keys: a
// flags byte whose tombstone bit marks a dead version, then the uvarints
// below, with every check decodeRecordHeader makes. CountRun counts only
// keys whose latest version is at or before the read revision and well
// formed; it hands the others back to scan, which resolves them with
// liveAtHeader. TestCountHeaderRule and FuzzCountHeaderRule fail when the
// two drift apart: change them together.
var recordHeaderRule = engine.HeaderRule{
	DeadFlag:            flagTombstone,
	Fields:              hdrFields,
	Int63Fields:         1<<hdrModSub | 1<<hdrCreate | 1<<hdrVersion, // mod main always is
	DeadZeroFields:      1<<hdrCreate | 1<<hdrVersion | 1<<hdrLease,
	LiveNonZeroFields:   1<<hdrCreate | 1<<hdrVersion,
	LiveAtMostRevFields: 1 << hdrCreate,
}

// The uvarint fields of a record header, in order (mod main is field 0,
// the revision engine.HeaderRule compares with the read revision).
const (
	hdrModMain = iota
	hdrModSub
	hdrCreate
	hdrVersion
	hdrLease
	hdrFields
)

// liveAtHeader reports whether the CFKV key under it exists at the
// reader's revision, reading only the latest record's header unless the
// key changed after the revision.
func (r *reader) liveAtHeader(it *engine.Iterator) (bool, error) {
	var h record
	if _, err := decodeRecordHeader(it.ValuePrefix(maxRecordHeaderBytes), &h); err != nil {
		return false, fmt.Errorf("mvcc: kv %q: %w", it.Key(), err)
	}
	if h.mod.Main <= r.rev {
		return !h.tombstone, nil
	}
	_, live, err := r.resolve(it.Key(), h)
	return live, err
}

// overlay holds a txn's pending writes so the txn's reads see them. Most
// txns write one key or a few, so entries live in a slice searched
// linearly; an index map is built past overlayLinearMaxKeys entries. The
// overlay is reset and reused by the next txn.
type overlay struct {
	ents []ovEntry // in first-write order
	idx  map[string]int
	// sorted indexes ents in key order; rebuilt by keysIn after a write
	// added a key.
	sorted      []*ovEntry
	sortedStale bool
}

// overlayLinearMaxKeys is the number of pending keys up to which lookups
// scan the entries instead of keeping a map.
const overlayLinearMaxKeys = 16

type ovEntry struct {
	key    []byte // aliases the txn's key: stable until the txn ends
	rec    record // the new version; a tombstone for a delete
	event  int    // index of its event in the txn
	before *record
	// before is the key's live version before the txn, if any. Its value
	// is kept only when the txn builds watch events (writeTxn.live).
}

// get returns key's pending entry. The pointer is valid until the next
// set.
func (o *overlay) get(key []byte) (*ovEntry, bool) {
	if o == nil {
		return nil, false
	}
	if o.idx != nil {
		i, ok := o.idx[string(key)]
		if !ok {
			return nil, false
		}
		return &o.ents[i], true
	}
	for i := range o.ents {
		if bytes.Equal(o.ents[i].key, key) {
			return &o.ents[i], true
		}
	}
	return nil, false
}

func (o *overlay) set(key []byte, e ovEntry) {
	e.key = key
	if old, ok := o.get(key); ok {
		*old = e
		return
	}
	o.ents = append(o.ents, e)
	o.sortedStale = true
	switch {
	case o.idx != nil:
		o.idx[string(key)] = len(o.ents) - 1
	case len(o.ents) > overlayLinearMaxKeys:
		o.idx = make(map[string]int, 2*len(o.ents))
		for i := range o.ents {
			o.idx[string(o.ents[i].key)] = i
		}
	}
}

func (o *overlay) len() int {
	if o == nil {
		return 0
	}
	return len(o.ents)
}

// reset empties the overlay for the next txn, dropping its references to
// the txn's keys and values.
func (o *overlay) reset() {
	clear(o.ents)
	o.ents = o.ents[:0]
	o.idx = nil
	clear(o.sorted)
	o.sorted = o.sorted[:0]
	o.sortedStale = false
}

// keysIn returns the pending entries with keys in [key, end) (end empty:
// unbounded), in key order. The pointers are valid until the next set.
func (o *overlay) keysIn(key, end []byte) []*ovEntry {
	if o.sortedStale || len(o.sorted) != len(o.ents) {
		o.sorted = o.sorted[:0]
		for i := range o.ents {
			o.sorted = append(o.sorted, &o.ents[i])
		}
		sort.Slice(o.sorted, func(i, j int) bool { return bytes.Compare(o.sorted[i].key, o.sorted[j].key) < 0 })
		o.sortedStale = false
	}
	cmp := func(i int, k []byte) bool { return bytes.Compare(o.sorted[i].key, k) >= 0 }
	i := sort.Search(len(o.sorted), func(n int) bool { return cmp(n, key) })
	j := len(o.sorted)
	if len(end) > 0 {
		j = sort.Search(len(o.sorted), func(n int) bool { return cmp(n, end) })
	}
	if j < i {
		return nil
	}
	return o.sorted[i:j]
}
