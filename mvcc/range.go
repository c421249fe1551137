package mvcc

import (
	"bytes"
	"context"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
)

// maxReadRetries bounds how often a read at the current revision restarts
// because a compaction above the revision it picked was scheduled while it
// ran (see reader). Each retry picks the newer current revision, so one
// retry is almost always enough.
const maxReadRetries = 8

// view is etcd's ReadView for one read: a current revision (the newest a
// request may ask for), the compaction revision, and the engine state. In a
// write txn curRev is beginRev+1 once the txn has written, and the
// overlay holds those writes; base is the last committed revision.
type view struct {
	src       source
	curRev    int64
	base      int64
	compacted int64
	ov        *overlay
	// cidx, if set, counts large ranges (countindex.go).
	cidx *countIndex
	// usedHistory is set when a read consulted CFHistory (see reader).
	usedHistory bool
}

type rangeResult struct {
	kvs   []mvccpb.KeyValue
	count int
	rev   int64
}

// rangeKeys is etcd's storeTxnCommon.rangeKeys: the keys in [key, end) at
// revision rev (0: current), at most limit of them (0: all), and the count
// of all of them.
func (v *view) rangeKeys(ctx context.Context, key, end []byte, rev, limit int64, countOnly bool) (*rangeResult, error) {
	if rev > v.curRev {
		return &rangeResult{count: -1, rev: v.curRev}, ErrFutureRev
	}
	if rev <= 0 {
		rev = v.curRev
	}
	if rev < v.compacted {
		return &rangeResult{count: -1}, ErrCompacted
	}
	rd := reader{src: v.src, rev: min(rev, v.base)}
	if rev > v.base {
		rd.ov = v.ov
	}
	if rd.ov == nil {
		rd.cidx = v.cidx
	}
	defer func() {
		rd.close()
		v.usedHistory = v.usedHistory || rd.usedHistory
	}()
	if end == nil {
		return rd.getKV(key, v.curRev, countOnly)
	}
	res := &rangeResult{rev: v.curRev}
	fullKeys := -1 // every key
	switch {
	case countOnly:
		fullKeys = 0
	case limit > 0:
		fullKeys = int(limit)
		res.kvs = make([]mvccpb.KeyValue, 0, min(limit, maxPreallocKVs))
	}
	var a arena
	count, err := rd.scan(ctx, key, end, fullKeys, func(k []byte, rec *record) bool {
		res.kvs = append(res.kvs, toKVWith(&a, k, rec))
		return true
	})
	if err != nil {
		return nil, err
	}
	res.count = count
	return res, nil
}

// getKVBufBytes is the room for the value that a single-key read
// allocates with its copy of the key; a larger value costs a second
// allocation and cgo call.
const getKVBufBytes = 512

// getKV is rangeKeys of one key. The result, its one KeyValue, and the
// key and value bytes take two allocations for values up to
// getKVBufBytes.
func (r *reader) getKV(key []byte, curRev int64, countOnly bool) (*rangeResult, error) {
	out := &struct {
		res rangeResult
		kv  [1]mvccpb.KeyValue
	}{res: rangeResult{rev: curRev}}
	buf := make([]byte, len(key), len(key)+getKVBufBytes)
	copy(buf, key)
	r.buf = buf[len(key):]
	rec, ok, err := r.get(key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &out.res, nil
	}
	out.res.count = 1
	if countOnly {
		return &out.res, nil
	}
	out.kv[0] = r.takeKV(buf[:len(key):len(key)], &rec)
	out.res.kvs = out.kv[:]
	return &out.res, nil
}

// maxPreallocKVs bounds the result slice a limited range allocates up
// front: a large limit on a small range must not cost its size in memory.
const maxPreallocKVs = 1024

// toKV copies a live version into a KeyValue.
func toKV(key []byte, rec *record) mvccpb.KeyValue { return toKVWith(nil, key, rec) }

// toKVWith copies a live version into a KeyValue, carving the key and
// value copies from a (nil: separate allocations).
func toKVWith(a *arena, key []byte, rec *record) mvccpb.KeyValue {
	kv := mvccpb.KeyValue{
		Key:            a.clone(key),
		CreateRevision: rec.create,
		ModRevision:    rec.mod.Main,
		Version:        rec.version,
		Lease:          rec.lease,
	}
	if len(rec.value) > 0 {
		kv.Value = a.clone(rec.value)
	}
	return kv
}

// arenaChunkBytes is the size of the chunks an arena allocates; a larger
// slice gets a chunk of its own.
const arenaChunkBytes = 32 << 10

// arena hands out copies of byte slices carved from shared chunks, so a
// range that returns many keys and values allocates a few chunks instead
// of two slices per key. Each copy is capped at its length: appending to
// one never overwrites its neighbour. A chunk lives as long as any copy
// in it.
type arena struct{ chunk []byte }

// clone returns a copy of b (nil a: a plain allocation).
func (a *arena) clone(b []byte) []byte {
	if a == nil {
		return bytes.Clone(b)
	}
	if b == nil {
		return nil
	}
	if len(b) > cap(a.chunk)-len(a.chunk) {
		if len(b) > arenaChunkBytes/4 {
			return bytes.Clone(b)
		}
		a.chunk = make([]byte, 0, arenaChunkBytes)
	}
	n := len(a.chunk)
	a.chunk = append(a.chunk, b...)
	return a.chunk[n:len(a.chunk):len(a.chunk)]
}

// Range serves a RangeRequest at the current revision or r.Revision,
// exactly as etcd's executeRange. It runs on any goroutine and takes no
// lock: it reads the published revision, then the engine, which may have
// moved ahead (see reader).
func (s *Store) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	g, err := s.readGen()
	if err != nil {
		return nil, err
	}
	resp, err := s.rangeAt(ctx, r)
	if err == nil {
		err = s.checkReadGen(g)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Store) rangeAt(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := ValidateRange(r); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	for attempt := 0; ; attempt++ {
		st := s.state.Load()
		v := &view{src: s.db, curRev: st.rev, base: st.rev, compacted: st.compacted, cidx: s.cidx}
		resp, err := executeRange(ctx, s.lg, v, r)
		if err != nil || !v.usedHistory {
			return resp, err
		}
		rev := r.Revision
		if rev <= 0 {
			rev = st.rev
		}
		if rev >= s.state.Load().compacted {
			return resp, nil
		}
		// A compaction above rev was scheduled while we read, and may
		// have removed versions we looked for.
		if r.Revision > 0 || attempt == maxReadRetries {
			return nil, ErrCompacted
		}
	}
}

// rangeFunc is etcd's TxnRead.Range as executeRange uses it.
type rangeFunc func(ctx context.Context, key, end []byte, rev, limit int64, countOnly bool) (*rangeResult, error)

// executeRange is etcd's txn.executeRange.
func executeRange(ctx context.Context, lg *zap.Logger, v *view, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	return executeRangeWith(ctx, lg, v.rangeKeys, r)
}

func executeRangeWith(ctx context.Context, lg *zap.Logger, rangeKeys rangeFunc, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	resp := newRangeResponse()

	limit := r.Limit
	if r.SortOrder != pb.RangeRequest_NONE ||
		r.MinModRevision != 0 || r.MaxModRevision != 0 ||
		r.MinCreateRevision != 0 || r.MaxCreateRevision != 0 {
		// fetch everything; sort and truncate afterwards
		limit = 0
	}
	if limit > 0 {
		// fetch one extra for 'more' flag
		limit = limit + 1
	}
	rr, err := rangeKeys(ctx, r.Key, mkGteRange(r.RangeEnd), r.Revision, limit, r.CountOnly)
	if err != nil {
		return nil, err
	}

	if r.MaxModRevision != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision > r.MaxModRevision })
	}
	if r.MinModRevision != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.ModRevision < r.MinModRevision })
	}
	if r.MaxCreateRevision != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision > r.MaxCreateRevision })
	}
	if r.MinCreateRevision != 0 {
		pruneKVs(rr, func(kv *mvccpb.KeyValue) bool { return kv.CreateRevision < r.MinCreateRevision })
	}

	sortOrder := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && sortOrder == pb.RangeRequest_NONE {
		// Results come sorted by key ascending: sort ascending by default
		// only when the target is not the key.
		sortOrder = pb.RangeRequest_ASCEND
	} else if r.SortTarget == pb.RangeRequest_KEY && sortOrder == pb.RangeRequest_ASCEND {
		sortOrder = pb.RangeRequest_NONE
	}
	if sortOrder != pb.RangeRequest_NONE {
		var sorter sort.Interface
		switch r.SortTarget {
		case pb.RangeRequest_KEY:
			sorter = &kvSortByKey{&kvSort{rr.kvs}}
		case pb.RangeRequest_VERSION:
			sorter = &kvSortByVersion{&kvSort{rr.kvs}}
		case pb.RangeRequest_CREATE:
			sorter = &kvSortByCreate{&kvSort{rr.kvs}}
		case pb.RangeRequest_MOD:
			sorter = &kvSortByMod{&kvSort{rr.kvs}}
		case pb.RangeRequest_VALUE:
			sorter = &kvSortByValue{&kvSort{rr.kvs}}
		default:
			lg.Panic("unexpected sort target", zap.Int32("sort-target", int32(r.SortTarget)))
		}
		switch sortOrder {
		case pb.RangeRequest_ASCEND:
			sort.Sort(sorter)
		case pb.RangeRequest_DESCEND:
			sort.Sort(sort.Reverse(sorter))
		}
	}

	if r.Limit > 0 && len(rr.kvs) > int(r.Limit) {
		rr.kvs = rr.kvs[:r.Limit]
		resp.More = true
	}
	resp.Header.Revision = rr.rev
	resp.Count = int64(rr.count)
	resp.Kvs = make([]*mvccpb.KeyValue, len(rr.kvs))
	for i := range rr.kvs {
		if r.KeysOnly {
			rr.kvs[i].Value = nil
		}
		resp.Kvs[i] = &rr.kvs[i]
	}
	return resp, nil
}

// newRangeResponse allocates a response and its header together.
func newRangeResponse() *pb.RangeResponse {
	r := &struct {
		resp pb.RangeResponse
		hdr  pb.ResponseHeader
	}{}
	r.resp.Header = &r.hdr
	return &r.resp
}

// mkGteRange is etcd's: a range end of "\x00" means every key >= key, which
// mvcc spells as an empty non-nil end.
func mkGteRange(rangeEnd []byte) []byte {
	if len(rangeEnd) == 1 && rangeEnd[0] == 0 {
		return []byte{}
	}
	return rangeEnd
}

func pruneKVs(rr *rangeResult, isPrunable func(*mvccpb.KeyValue) bool) {
	j := 0
	for i := range rr.kvs {
		rr.kvs[j] = rr.kvs[i]
		if !isPrunable(&rr.kvs[i]) {
			j++
		}
	}
	rr.kvs = rr.kvs[:j]
}

// The sorters are etcd's, type for type: sort.Sort is not stable, so equal
// elements end in an order that depends on the exact Less and Swap calls.
type kvSort struct{ kvs []mvccpb.KeyValue }

func (s *kvSort) Swap(i, j int) {
	t := s.kvs[i]
	s.kvs[i] = s.kvs[j]
	s.kvs[j] = t
}
func (s *kvSort) Len() int { return len(s.kvs) }

type kvSortByKey struct{ *kvSort }

func (s *kvSortByKey) Less(i, j int) bool {
	return bytes.Compare(s.kvs[i].Key, s.kvs[j].Key) < 0
}

type kvSortByVersion struct{ *kvSort }

func (s *kvSortByVersion) Less(i, j int) bool {
	return (s.kvs[i].Version - s.kvs[j].Version) < 0
}

type kvSortByCreate struct{ *kvSort }

func (s *kvSortByCreate) Less(i, j int) bool {
	return (s.kvs[i].CreateRevision - s.kvs[j].CreateRevision) < 0
}

type kvSortByMod struct{ *kvSort }

func (s *kvSortByMod) Less(i, j int) bool {
	return (s.kvs[i].ModRevision - s.kvs[j].ModRevision) < 0
}

type kvSortByValue struct{ *kvSort }

func (s *kvSortByValue) Less(i, j int) bool {
	return bytes.Compare(s.kvs[i].Value, s.kvs[j].Value) < 0
}
