package mvcc

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
)

// errDuplicateWrite: a key written twice in one revision. Validation
// rejects such requests first; this guards the layout's invariant that
// (key, main revision) names one version.
var errDuplicateWrite = errors.New("mvcc: key written twice in one revision")

// writeTxn is one revision in the making: etcd's storeTxnWrite. Every
// change goes straight into the batch; the overlay lets the txn's own
// reads see them. Nothing is visible to anyone else until commit writes
// the batch and publishes the revision.
type writeTxn struct {
	s         *Store
	beginRev  int64
	compacted int64
	b         *engine.Batch
	ov        overlay
	events    []eventEntry
	// live are the events for subscribers, built only when there are any.
	live []mvccpb.Event
	// afterCommit runs once the batch is written (in-memory lease table).
	afterCommit []func()
	// grouped is set when the txn is part of a group commit (group.go):
	// it shares the group's batch, reads through src and records its kv
	// writes in the group, with undo to take them back if it fails.
	grouped bool
	src     source
	undo    []undoEntry
	mark    engine.BatchMark
	// cdeltas are the txn's changes to the count index (countindex.go).
	cdeltas []countDelta

	// Scratch space reused by every txn (the txn itself is s.mu.tx): the
	// batch copies what it is given, so one buffer serves each encoding in
	// turn. latestBuf holds the value latest read last.
	scratch, latestBuf []byte
}

// newTxnLocked starts a write txn, reusing the store's txn and its
// buffers; a grouped txn continues the pending group's batch and
// revision. REQUIRES: s.mu held.
func (s *Store) newTxnLocked(grouped bool) *writeTxn {
	st := s.state.Load()
	b := s.mu.batch
	tx := &s.mu.tx
	tx.reset()
	tx.s, tx.beginRev, tx.compacted, tx.b, tx.src = s, st.rev, st.compacted, b, s.db
	if grouped {
		g := &s.mu.group
		if g.kv == nil {
			g.kv = make(map[string][]byte)
		}
		if g.rev != 0 {
			tx.beginRev = g.rev
		}
		tx.grouped, tx.src, tx.mark = true, groupSource{db: s.db, kv: g.kv, lc: s.lc}, b.Mark()
	} else {
		b.Reset()
	}
	if s.subs.active() {
		tx.live = make([]mvccpb.Event, 0, 1)
	}
	return tx
}

// maxRetainedTxnBytes bounds each scratch buffer a txn keeps for the
// next one: a txn that wrote a large value does not pin its size forever.
const maxRetainedTxnBytes = 64 << 10

// reset drops everything the previous txn referenced, keeping capacity
// up to maxRetainedTxnBytes per buffer.
func (tx *writeTxn) reset() {
	clear(tx.events)
	tx.events = tx.events[:0]
	tx.ov.reset()
	tx.live = nil // handed to subscribers: never reused
	clear(tx.afterCommit)
	tx.afterCommit = tx.afterCommit[:0]
	clear(tx.undo)
	tx.undo = tx.undo[:0]
	tx.cdeltas = tx.cdeltas[:0]
	tx.grouped, tx.src = false, nil
	if cap(tx.scratch) > maxRetainedTxnBytes {
		tx.scratch = nil
	}
	if cap(tx.latestBuf) > maxRetainedTxnBytes {
		tx.latestBuf = nil
	}
}

// view is the txn's read view: beginRev, plus its own writes at beginRev+1
// once it has any.
func (tx *writeTxn) view() *view {
	v := &view{src: tx.src, curRev: tx.beginRev, base: tx.beginRev, compacted: tx.compacted}
	if len(tx.events) > 0 {
		v.curRev++
		v.ov = &tx.ov
	}
	return v
}

// applyWrite runs fn in a write txn for raft entry index and commits it;
// a groupable txn joins the pending group commit, if one is open (see
// group.go). An error from fn discards every change; the entry still
// counts as applied (it fails the same way on replay).
func (s *Store) applyWrite(index uint64, groupable bool, fn func(tx *writeTxn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The group is written out first even for an entry that turns out to
	// be applied already: what a non-grouped caller reads after (Rev())
	// includes the pending group.
	grouped, err := s.groupedLocked(groupable)
	if err != nil {
		return err
	}
	if err := s.beginApplyLocked(index); err != nil {
		return err
	}
	tx := s.newTxnLocked(grouped)
	if err := fn(tx); err != nil {
		tx.rollback()
		s.noteAppliedLocked(index)
		return err
	}
	return tx.commitLocked(index)
}

// rollback takes back every change of the txn: the whole batch, or in a
// group the txn's part of it and of the group's records.
func (tx *writeTxn) rollback() {
	if !tx.grouped {
		tx.b.Reset()
		return
	}
	tx.b.RollbackTo(tx.mark)
	kv := tx.s.mu.group.kv
	for i := len(tx.undo) - 1; i >= 0; i-- {
		u := tx.undo[i]
		if u.had {
			kv[u.key] = u.prev
		} else {
			delete(kv, u.key)
		}
	}
}

// commitLocked writes the txn's batch with the applied index (and, if it
// changed keys, its event list, whose key is the new current revision),
// then publishes the revision and notifies subscribers.
// REQUIRES: s.mu held.
func (tx *writeTxn) commitLocked(index uint64) error {
	s := tx.s
	rev := tx.beginRev + 1
	changed := len(tx.events) > 0
	if tx.grouped {
		return tx.commitGroupedLocked(index, rev, changed)
	}
	if !changed && tx.b.Empty() {
		s.noteAppliedLocked(index)
		return nil
	}
	if changed {
		tx.putEvents(rev)
	}
	if err := s.writeAppliedLocked(tx.b, index); err != nil {
		return err
	}
	if changed {
		if err := s.cidx.apply(s.db, tx.cdeltas, rev); err != nil {
			return err
		}
		s.state.Store(&revState{rev: rev, compacted: tx.compacted})
	}
	for _, f := range tx.afterCommit {
		f()
	}
	if changed && tx.live != nil {
		s.subs.publish(rev, tx.live)
	}
	return nil
}

// putEvents adds the txn's event list to its batch. The list's key is the
// new current revision rev (see Store.load): no meta key is written for it.
func (tx *writeTxn) putEvents(rev int64) {
	tx.scratch = appendEvents(tx.scratch[:0], tx.events)
	n := len(tx.scratch)
	tx.scratch = appendEventKey(tx.scratch, rev)
	tx.b.Put(engine.CFEvents, tx.scratch[n:], tx.scratch[:n])
}

// commitGroupedLocked adds the txn to the pending group: its events go in
// the group's batch, its revision, in-memory effects and subscriber
// events wait for the group's write (flushGroupLocked).
// REQUIRES: s.mu held.
func (tx *writeTxn) commitGroupedLocked(index uint64, rev int64, changed bool) error {
	s, g := tx.s, &tx.s.mu.group
	if changed {
		tx.putEvents(rev)
		g.rev = rev
		if tx.live != nil {
			g.pubs = append(g.pubs, groupPub{rev: rev, events: tx.live})
		}
	}
	g.afterCommit = append(g.afterCommit, tx.afterCommit...)
	g.cdeltas = append(g.cdeltas, tx.cdeltas...)
	g.txns++
	// The index is persisted with the group's write; until then it is
	// applied in memory only, as any lazily persisted index.
	s.noteAppliedLocked(index)
	return nil
}

// latest returns the committed latest record of key and its bytes, which
// alias tx.latestBuf: valid until the next call. In a group it sees the
// group's pending writes.
func (tx *writeTxn) latest(key []byte) (record, []byte, bool, error) {
	raw, ok, err := tx.src.GetAppend(tx.latestBuf[:0], engine.CFKV, key)
	tx.latestBuf = raw
	if err != nil || !ok {
		return record{}, nil, false, err
	}
	rec, err := decodeRecord(raw)
	if err != nil {
		return record{}, nil, false, fmt.Errorf("mvcc: kv %q: %w", key, err)
	}
	return rec, raw, true, nil
}

// write records a new version of key (a put, or a tombstone when del) at
// the txn's revision, moving the latest version to CFHistory and keeping
// the lease attachments and the event list in step.
//
// A key already written by this txn (the etcd corner described at
// eventEntry) is written again: the earlier version becomes inline in its
// event, and the history move and superseded revision still refer to the
// version before the txn.
func (tx *writeTxn) write(key, value []byte, lease int64, del bool) error {
	rev := Revision{Main: tx.beginRev + 1, Sub: int64(len(tx.events))}
	var (
		prev      record // the version this write replaces (maybe pending)
		prevFound bool
		before    *record // the live version at beginRev, if any
	)
	if e, pending := tx.ov.get(key); pending {
		prev, prevFound, before = e.rec, true, e.before
		tx.events[e.event].inline = encodeRecord(&e.rec)
	} else {
		old, oldRaw, found, err := tx.latest(key)
		if err != nil {
			return err
		}
		if found {
			if old.mod.Main >= rev.Main {
				tx.s.lg.Panic("latest version is not older than the revision being written",
					zap.ByteString("key", key), zap.Int64("latest", old.mod.Main), zap.Int64("rev", rev.Main))
			}
			tx.scratch = appendHistoryKey(tx.scratch[:0], key, old.mod.Main)
			tx.b.Put(engine.CFHistory, tx.scratch, oldRaw)
			if !old.tombstone {
				// old.value aliases latestBuf, which the next write
				// reuses: keep a copy only if an event needs it.
				b := old
				b.value = nil
				if tx.live != nil {
					b.value = bytes.Clone(old.value)
				}
				before = &b
			}
		}
		prev, prevFound = old, found
	}
	live := prevFound && !prev.tombstone
	if ci := tx.s.cidx; ci != nil && live == del {
		// A key created, or a live key deleted (countindex.go).
		d := int64(1)
		if del {
			d = -1
		}
		tx.cdeltas = append(tx.cdeltas, countDelta{bucket: ci.bucketOf(key), d: d})
	}
	nr := record{mod: rev, tombstone: del}
	if !del {
		nr.lease, nr.value = lease, value
		nr.create, nr.version = rev.Main, 1
		if live {
			nr.create, nr.version = prev.create, prev.version+1
		}
	}
	tx.scratch = appendRecord(tx.scratch[:0], &nr)
	tx.b.Put(engine.CFKV, key, tx.scratch)
	if !tx.grouped {
		// Dropped before the batch is written (a rolled-back txn only
		// costs a miss); a group's records enter the cache once written.
		tx.s.lc.drop(key)
	} else {
		kv := tx.s.mu.group.kv
		prevRaw, had := kv[string(key)]
		tx.undo = append(tx.undo, undoEntry{key: string(key), prev: prevRaw, had: had})
		kv[string(key)] = bytes.Clone(tx.scratch)
	}

	var oldLease int64
	if live {
		oldLease = prev.lease
	}
	if oldLease != nr.lease {
		if oldLease != 0 {
			tx.b.Delete(engine.CFLease, attachKey(oldLease, key))
		}
		if nr.lease != 0 {
			tx.b.Put(engine.CFLease, attachKey(nr.lease, key), nil)
		}
	}

	ev := eventEntry{del: del, sub: rev.Sub, key: key}
	if before != nil {
		ev.superseded = before.mod.Main
	}
	tx.events = append(tx.events, ev)
	tx.ov.set(key, ovEntry{rec: nr, event: len(tx.events) - 1, before: before})

	if tx.live != nil {
		tx.live = append(tx.live, makeEvent(key, &nr, before))
	}
	return nil
}

// makeEvent builds the watch event of version rec of key; before is the
// key's live version at rev-1, if any. As etcd's watch, a create event (a
// put with create == mod revision) has no prev KV.
func makeEvent(key []byte, rec *record, before *record) mvccpb.Event {
	var e mvccpb.Event
	if rec.tombstone {
		e.Type = mvccpb.DELETE
		e.Kv = &mvccpb.KeyValue{Key: bytes.Clone(key), ModRevision: rec.mod.Main}
	} else {
		e.Type = mvccpb.PUT
		kv := toKV(key, rec)
		e.Kv = &kv
	}
	if before != nil && !(e.Type == mvccpb.PUT && rec.create == rec.mod.Main) {
		kv := toKV(key, before)
		e.PrevKv = &kv
	}
	return e
}

// liveKeys returns the keys in [key, end) that exist in the txn's current
// view (end nil: the single key).
func (tx *writeTxn) liveKeys(key, end []byte) ([][]byte, error) {
	v := tx.view()
	rd := reader{src: v.src, rev: v.base, ov: v.ov}
	defer rd.close()
	if end == nil {
		_, ok, err := rd.get(key)
		if err != nil || !ok {
			return nil, err
		}
		return [][]byte{key}, nil
	}
	var keys [][]byte
	_, err := rd.scan(context.Background(), key, end, -1, func(k []byte, _ *record) bool {
		keys = append(keys, append([]byte(nil), k...))
		return true
	})
	return keys, err
}

// deleteRangeKeys is etcd's storeTxnWrite.deleteRange.
func (tx *writeTxn) deleteRangeKeys(key, end []byte) (int64, error) {
	keys, err := tx.liveKeys(key, end)
	if err != nil {
		return 0, err
	}
	for _, k := range keys {
		if err := tx.write(k, nil, 0, true); err != nil {
			return 0, err
		}
	}
	return int64(len(keys)), nil
}

// put is etcd's txn.put: the PutRequest semantics on top of write.
func (tx *writeTxn) put(ctx context.Context, p *pb.PutRequest) (*pb.PutResponse, error) {
	resp := newPutResponse()
	val, leaseID := p.Value, p.Lease
	var rr *rangeResult
	if p.IgnoreValue || p.IgnoreLease || p.PrevKv {
		var err error
		rr, err = tx.view().rangeKeys(ctx, p.Key, nil, 0, 0, false)
		if err != nil {
			return nil, err
		}
	}
	if p.IgnoreValue || p.IgnoreLease {
		if rr == nil || len(rr.kvs) == 0 {
			// ignore_{lease,value} flag expects previous key-value pair
			return nil, ErrKeyNotFound
		}
	}
	if p.IgnoreValue {
		val = rr.kvs[0].Value
	}
	if p.IgnoreLease {
		leaseID = rr.kvs[0].Lease
	}
	if p.PrevKv && rr != nil && len(rr.kvs) != 0 {
		resp.PrevKv = &rr.kvs[0]
	}
	if err := tx.write(p.Key, val, leaseID, false); err != nil {
		return nil, err
	}
	resp.Header.Revision = tx.beginRev + 1
	return resp, nil
}

// newPutResponse allocates a response and its header together.
func newPutResponse() *pb.PutResponse {
	r := &struct {
		resp pb.PutResponse
		hdr  pb.ResponseHeader
	}{}
	r.resp.Header = &r.hdr
	return &r.resp
}

// deleteRange is etcd's txn.deleteRange.
func (tx *writeTxn) deleteRange(ctx context.Context, dr *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	end := mkGteRange(dr.RangeEnd)
	if dr.PrevKv {
		rr, err := tx.view().rangeKeys(ctx, dr.Key, end, 0, 0, false)
		if err != nil {
			return nil, err
		}
		if rr != nil {
			resp.PrevKvs = make([]*mvccpb.KeyValue, len(rr.kvs))
			for i := range rr.kvs {
				resp.PrevKvs[i] = &rr.kvs[i]
			}
		}
	}
	n, err := tx.deleteRangeKeys(dr.Key, end)
	if err != nil {
		return nil, err
	}
	resp.Deleted = n
	resp.Header.Revision = tx.beginRev
	if n != 0 || len(tx.events) > 0 {
		resp.Header.Revision = tx.beginRev + 1
	}
	return resp, nil
}

// Put applies raft entry index, a PutRequest, as etcd's apply does: the
// lease must exist, ignore_value/ignore_lease need an existing key.
func (s *Store) Put(index uint64, r *pb.PutRequest) (*pb.PutResponse, error) {
	var resp *pb.PutResponse
	err := s.applyWrite(index, groupablePut(r), func(tx *writeTxn) error {
		if err := ValidatePut(r); err != nil {
			return err
		}
		if r.Lease != 0 && !s.leases.exists(r.Lease) {
			return ErrLeaseNotFound
		}
		var err error
		resp, err = tx.put(context.Background(), r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// DeleteRange applies raft entry index, a DeleteRangeRequest. Deleting
// nothing creates no revision.
func (s *Store) DeleteRange(index uint64, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	var resp *pb.DeleteRangeResponse
	err := s.applyWrite(index, groupableDeleteRange(r), func(tx *writeTxn) error {
		if err := ValidateDeleteRange(r); err != nil {
			return err
		}
		var err error
		resp, err = tx.deleteRange(context.Background(), r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
