package mvcc

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
)

// model is a small in-memory implementation of etcd's MVCC semantics,
// written independently of the store's layout: every version of every key
// stays in a list, compaction is a revision check, and HashKV simulates
// etcd's key bucket (including the versions its compaction removes)
// with etcd's kvHasher rules. The randomized test runs the same requests
// against it and the store and requires identical answers.
type model struct {
	versions  map[string][]mver // in (main, sub) order
	rev       int64
	compacted int64
	leases    map[int64]Lease
	// physical holds the revisions etcd's bolt key bucket still has.
	physical map[Revision]bool
	hashes   []KeyValueHash
	applied  uint64
}

type mver struct {
	rev     Revision
	tomb    bool
	create  int64
	version int64
	lease   int64
	value   []byte
}

func newModel() *model {
	return &model{versions: map[string][]mver{}, rev: 1, compacted: -1,
		leases: map[int64]Lease{}, physical: map[Revision]bool{}}
}

// at returns key's newest version with main revision <= rev.
func (m *model) at(key string, rev int64) (mver, bool) {
	vs := m.versions[key]
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].rev.Main <= rev {
			return vs[i], true
		}
	}
	return mver{}, false
}

func (m *model) liveAt(key string, rev int64) (mver, bool) {
	v, ok := m.at(key, rev)
	if !ok || v.tomb {
		return mver{}, false
	}
	return v, true
}

func (v *mver) kv(key string) mvccpb.KeyValue {
	kv := mvccpb.KeyValue{Key: []byte(key), CreateRevision: v.create, ModRevision: v.rev.Main,
		Version: v.version, Lease: v.lease}
	if len(v.value) > 0 {
		kv.Value = v.value
	}
	return kv
}

func (m *model) sortedKeys() []string {
	keys := make([]string, 0, len(m.versions))
	for k := range m.versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func inModelRange(k string, key, end []byte) bool {
	if end == nil {
		return k == string(key)
	}
	if k < string(key) {
		return false
	}
	return len(end) == 0 || k < string(end)
}

// mtxn is a model write txn: writes go straight into the version lists at
// main revision beginRev+1 (so reads at that revision see them) and are
// undone on error.
type mtxn struct {
	m        *model
	beginRev int64
	changes  int
	undo     map[string]int
}

func (m *model) begin() *mtxn { return &mtxn{m: m, beginRev: m.rev, undo: map[string]int{}} }

func (t *mtxn) curRev() int64 {
	if t.changes > 0 {
		return t.beginRev + 1
	}
	return t.beginRev
}

func (t *mtxn) abort() {
	for k, n := range t.undo {
		if n == 0 {
			delete(t.m.versions, k)
		} else {
			t.m.versions[k] = t.m.versions[k][:n]
		}
	}
}

func (t *mtxn) commit() {
	if t.changes > 0 {
		t.m.rev++
		for k, n := range t.undo {
			for _, v := range t.m.versions[k][n:] {
				t.m.physical[v.rev] = true
			}
		}
	}
}

// rangeAt is etcd's rangeKeys for a view whose current revision is cur.
func (m *model) rangeAt(cur int64) rangeFunc {
	return func(_ context.Context, key, end []byte, rev, limit int64, countOnly bool) (*rangeResult, error) {
		if rev > cur {
			return &rangeResult{count: -1, rev: cur}, ErrFutureRev
		}
		if rev <= 0 {
			rev = cur
		}
		if rev < m.compacted {
			return &rangeResult{count: -1}, ErrCompacted
		}
		res := &rangeResult{rev: cur}
		for _, k := range m.sortedKeys() {
			if !inModelRange(k, key, end) {
				continue
			}
			v, ok := m.liveAt(k, rev)
			if !ok {
				continue
			}
			res.count++
			if countOnly || (limit > 0 && int64(len(res.kvs)) >= limit) {
				continue
			}
			res.kvs = append(res.kvs, v.kv(k))
		}
		return res, nil
	}
}

func (t *mtxn) write(key string, value []byte, lease int64, del bool) {
	if _, ok := t.undo[key]; !ok {
		t.undo[key] = len(t.m.versions[key])
	}
	rev := Revision{Main: t.beginRev + 1, Sub: int64(t.changes)}
	t.changes++
	nv := mver{rev: rev, tomb: del}
	if !del {
		nv.value, nv.lease = value, lease
		nv.create, nv.version = rev.Main, 1
		if old, ok := t.m.liveAt(key, rev.Main); ok {
			nv.create, nv.version = old.create, old.version+1
		}
	}
	t.m.versions[key] = append(t.m.versions[key], nv)
}

func (t *mtxn) put(p *pb.PutRequest) (*pb.PutResponse, error) {
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{}}
	val, lease := p.Value, p.Lease
	old, ok := t.m.liveAt(string(p.Key), t.curRev())
	if (p.IgnoreValue || p.IgnoreLease) && !ok {
		return nil, ErrKeyNotFound
	}
	if p.IgnoreValue {
		val = old.value
	}
	if p.IgnoreLease {
		lease = old.lease
	}
	if p.PrevKv && ok {
		kv := old.kv(string(p.Key))
		resp.PrevKv = &kv
	}
	t.write(string(p.Key), val, lease, false)
	resp.Header.Revision = t.beginRev + 1
	return resp, nil
}

func (t *mtxn) deleteRange(d *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	end := mkGteRange(d.RangeEnd)
	var keys []string
	for _, k := range t.m.sortedKeys() {
		if _, ok := t.m.liveAt(k, t.curRev()); ok && inModelRange(k, d.Key, end) {
			keys = append(keys, k)
		}
	}
	if d.PrevKv {
		resp.PrevKvs = []*mvccpb.KeyValue{}
		for _, k := range keys {
			v, _ := t.m.liveAt(k, t.curRev())
			kv := v.kv(k)
			resp.PrevKvs = append(resp.PrevKvs, &kv)
		}
	}
	for _, k := range keys {
		t.write(k, nil, 0, true)
	}
	resp.Deleted = int64(len(keys))
	resp.Header.Revision = t.beginRev
	if len(keys) > 0 || t.changes > 0 {
		resp.Header.Revision = t.beginRev + 1
	}
	return resp
}

func (m *model) applyIndex(index uint64) error {
	if index <= m.applied {
		return ErrAlreadyApplied
	}
	m.applied = index
	return nil
}

func (m *model) Put(index uint64, p *pb.PutRequest) (*pb.PutResponse, error) {
	if err := m.applyIndex(index); err != nil {
		return nil, err
	}
	if err := ValidatePut(p); err != nil {
		return nil, err
	}
	if _, ok := m.leases[p.Lease]; p.Lease != 0 && !ok {
		return nil, ErrLeaseNotFound
	}
	t := m.begin()
	resp, err := t.put(p)
	if err != nil {
		t.abort()
		return nil, err
	}
	t.commit()
	return resp, nil
}

func (m *model) DeleteRange(index uint64, d *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := m.applyIndex(index); err != nil {
		return nil, err
	}
	if err := ValidateDeleteRange(d); err != nil {
		return nil, err
	}
	t := m.begin()
	resp := t.deleteRange(d)
	t.commit()
	return resp, nil
}

func (m *model) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := ValidateRange(r); err != nil {
		return nil, err
	}
	return executeRangeWith(context.Background(), zap.NewNop(), m.rangeAt(m.rev), r)
}

// Txn follows etcd's txn.go step by step on the model.
func (m *model) Txn(index uint64, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := m.applyIndex(index); err != nil {
		return nil, err
	}
	if err := ValidateTxn(r, 1<<30); err != nil {
		return nil, err
	}
	t := m.begin()
	var path []bool
	var walk func(r *pb.TxnRequest)
	walk = func(r *pb.TxnRequest) {
		ok := true
		for _, c := range r.Compare {
			if !m.compare(c) {
				ok = false
				break
			}
		}
		path = append(path, ok)
		ops := r.Success
		if !ok {
			ops = r.Failure
		}
		for _, op := range ops {
			if tv, isTxn := op.Request.(*pb.RequestOp_RequestTxn); isTxn && tv.RequestTxn != nil {
				walk(tv.RequestTxn)
			}
		}
	}
	walk(r)
	// Check the chosen path against the state before the txn.
	pi := 0
	var check func(r *pb.TxnRequest) error
	check = func(r *pb.TxnRequest) error {
		ops := r.Success
		if !path[pi] {
			ops = r.Failure
		}
		pi++
		for _, op := range ops {
			switch tv := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				if rv := tv.RequestRange.Revision; rv > m.rev {
					return ErrFutureRev
				} else if rv != 0 && rv < m.compacted {
					return ErrCompacted
				}
			case *pb.RequestOp_RequestPut:
				p := tv.RequestPut
				if p.IgnoreValue || p.IgnoreLease {
					if _, ok := m.liveAt(string(p.Key), m.rev); !ok {
						return ErrKeyNotFound
					}
				}
				if _, ok := m.leases[p.Lease]; p.Lease != 0 && !ok {
					return ErrLeaseNotFound
				}
			case *pb.RequestOp_RequestTxn:
				if err := check(tv.RequestTxn); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := check(r); err != nil {
		return nil, err
	}
	pi = 0
	var exec func(r *pb.TxnRequest) (*pb.TxnResponse, error)
	exec = func(r *pb.TxnRequest) (*pb.TxnResponse, error) {
		resp := &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: path[pi]}
		ops := r.Success
		if !path[pi] {
			ops = r.Failure
		}
		pi++
		resp.Responses = make([]*pb.ResponseOp, len(ops))
		for i, op := range ops {
			switch tv := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				rr, err := executeRangeWith(context.Background(), zap.NewNop(), m.rangeAt(t.curRev()), tv.RequestRange)
				if err != nil {
					return nil, fmt.Errorf("applyTxn: failed Range: %w", err)
				}
				resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}}
			case *pb.RequestOp_RequestPut:
				pr, err := t.put(tv.RequestPut)
				if err != nil {
					return nil, fmt.Errorf("applyTxn: failed Put: %w", err)
				}
				resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: pr}}
			case *pb.RequestOp_RequestDeleteRange:
				resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{
					ResponseDeleteRange: t.deleteRange(tv.RequestDeleteRange)}}
			case *pb.RequestOp_RequestTxn:
				sub, err := exec(tv.RequestTxn)
				if err != nil {
					return nil, err
				}
				resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: sub}}
			}
		}
		return resp, nil
	}
	resp, err := exec(r)
	if err != nil {
		t.abort()
		return nil, err
	}
	resp.Header.Revision = t.curRev()
	t.commit()
	return resp, nil
}

func (m *model) compare(c *pb.Compare) bool {
	res, _ := m.rangeAt(m.rev)(context.Background(), c.Key, mkGteRange(c.RangeEnd), 0, 0, false)
	if len(res.kvs) == 0 {
		if c.Target == pb.Compare_VALUE {
			return false
		}
		return compareKV(c, mvccpb.KeyValue{})
	}
	for _, kv := range res.kvs {
		if !compareKV(c, kv) {
			return false
		}
	}
	return true
}

func (m *model) LeaseGrant(index uint64, id, ttl int64, maxLeases int) error {
	if err := m.applyIndex(index); err != nil {
		return err
	}
	switch _, ok := m.leases[id]; {
	case id == 0:
		return ErrLeaseNotFound
	case ttl > MaxLeaseTTL:
		return ErrLeaseTTLTooLarge
	case ok:
		return ErrLeaseExists
	case len(m.leases) >= maxLeases:
		return ErrTooManyLeases
	}
	m.leases[id] = Lease{ID: id, TTL: ttl}
	return nil
}

func (m *model) leaseKeys(id int64) []string {
	var keys []string
	for _, k := range m.sortedKeys() {
		if v, ok := m.liveAt(k, m.rev); ok && v.lease == id {
			keys = append(keys, k)
		}
	}
	return keys
}

func (m *model) LeaseRevoke(index uint64, id int64) (int64, error) {
	if err := m.applyIndex(index); err != nil {
		return m.rev, err
	}
	if _, ok := m.leases[id]; !ok {
		return m.rev, ErrLeaseNotFound
	}
	t := m.begin()
	for _, k := range m.leaseKeys(id) {
		t.write(k, nil, 0, true)
	}
	t.commit()
	delete(m.leases, id)
	return m.rev, nil
}

func (m *model) LeaseCheckpoint(index uint64, id, rem int64) error {
	if err := m.applyIndex(index); err != nil {
		return err
	}
	if l, ok := m.leases[id]; ok {
		l.RemainingTTL = rem
		m.leases[id] = l
	}
	return nil
}

// Compact schedules and (the model being synchronous) finishes compaction.
func (m *model) Compact(index uint64, rev int64) error {
	if err := m.applyIndex(index); err != nil {
		return err
	}
	if rev <= m.compacted {
		return ErrCompacted
	}
	if rev > m.rev {
		return ErrFutureRev
	}
	prev := m.compacted
	keep := m.compactKeep(rev)
	h := m.bucketHash(prev, rev, keep)
	m.hashes = append(m.hashes, h)
	if len(m.hashes) > hashCacheSize {
		m.hashes = m.hashes[1:]
	}
	for r := range m.physical {
		if r.Main <= rev && !keep[r] {
			delete(m.physical, r)
		}
	}
	m.compacted = rev
	return nil
}

// compactKeep is etcd's kvindex.Compact(rev) available set: each key's
// newest version <= rev if it is a put or a tombstone exactly at rev.
func (m *model) compactKeep(rev int64) map[Revision]bool {
	keep := map[Revision]bool{}
	for k := range m.versions {
		if v, ok := m.at(k, rev); ok && (!v.tomb || v.rev.Main == rev) {
			keep[v.rev] = true
		}
	}
	return keep
}

// hashKeep is etcd's kvindex.Keep(rev): each key's newest version <= rev
// if it is a put.
func (m *model) hashKeep(rev int64) map[Revision]bool {
	keep := map[Revision]bool{}
	for k := range m.versions {
		if v, ok := m.liveAt(k, rev); ok {
			keep[v.rev] = true
		}
	}
	return keep
}

// bucketHash is etcd's kvHasher over the simulated key bucket.
func (m *model) bucketHash(compactRev, rev int64, keep map[Revision]bool) KeyValueHash {
	type entry struct {
		rev Revision
		key string
		v   mver
	}
	var all []entry
	for k, vs := range m.versions {
		for _, v := range vs {
			if m.physical[v.rev] {
				all = append(all, entry{v.rev, k, v})
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[j].rev.GreaterThan(all[i].rev) })
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	h.Write([]byte("key"))
	for _, e := range all {
		if e.rev.Main > rev {
			continue
		}
		if e.rev.Main <= compactRev && len(keep) > 0 && !keep[e.rev] {
			continue
		}
		if e.rev.Main == compactRev && e.v.tomb {
			continue
		}
		kb := make([]byte, 17, 18)
		binary.BigEndian.PutUint64(kb, uint64(e.rev.Main))
		kb[8] = '_'
		binary.BigEndian.PutUint64(kb[9:], uint64(e.rev.Sub))
		kv := mvccpb.KeyValue{Key: []byte(e.key)}
		if e.v.tomb {
			kb = append(kb, 't')
		} else {
			kv = e.v.kv(e.key)
		}
		b, _ := kv.Marshal()
		h.Write(kb)
		h.Write(b)
	}
	return KeyValueHash{Hash: h.Sum32(), CompactRevision: compactRev, Revision: rev}
}

func (m *model) HashKV(rev int64) (uint32, int64, error) {
	for _, h := range m.hashes {
		if h.Revision == rev {
			return h.Hash, h.CompactRevision, nil
		}
	}
	if rev > 0 && rev < m.compacted {
		return 0, 0, ErrCompacted
	}
	if rev > 0 && rev > m.rev {
		return 0, 0, ErrFutureRev
	}
	if rev == 0 {
		rev = m.rev
	}
	h := m.bucketHash(m.compacted, rev, m.hashKeep(rev))
	return h.Hash, h.CompactRevision, nil
}

// Events is the store's Events on the model: etcd's watch events with
// prev KVs from a range at revision-1.
func (m *model) Events(from, to int64, key, end []byte, maxEvents int) ([]mvccpb.Event, int64, error) {
	if to <= 0 || to > m.rev {
		to = m.rev
	}
	if from < m.compacted {
		return nil, 0, ErrCompacted
	}
	if from > to {
		return nil, from, nil
	}
	end = mkGteRange(end)
	type entry struct {
		key string
		v   mver
		idx int
	}
	var all []entry
	for k, vs := range m.versions {
		for i, v := range vs {
			if v.rev.Main >= from && v.rev.Main <= to {
				all = append(all, entry{k, v, i})
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[j].v.rev.GreaterThan(all[i].v.rev) })
	var evs []mvccpb.Event
	next := from
	for i := 0; i < len(all); {
		rev := all[i].v.rev.Main
		if maxEvents > 0 && len(evs) >= maxEvents {
			return evs, next, nil
		}
		for ; i < len(all) && all[i].v.rev.Main == rev; i++ {
			e := all[i]
			if !(len(key) == 0 && end == nil) && !inModelRange(e.key, key, end) {
				continue
			}
			vs := m.versions[e.key]
			superseded := e.idx+1 < len(vs) && vs[e.idx+1].rev.Main == rev
			if superseded && rev <= m.compacted {
				continue
			}
			var ev mvccpb.Event
			if e.v.tomb {
				ev = mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(e.key), ModRevision: rev}}
			} else {
				kv := e.v.kv(e.key)
				ev = mvccpb.Event{Type: mvccpb.PUT, Kv: &kv}
			}
			isCreate := !e.v.tomb && e.v.create == rev
			if !isCreate && rev-1 >= m.compacted {
				if pv, ok := m.liveAt(e.key, rev-1); ok {
					kv := pv.kv(e.key)
					ev.PrevKv = &kv
				}
			}
			evs = append(evs, ev)
		}
		next = rev + 1
	}
	return evs, to + 1, nil
}
