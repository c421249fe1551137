package mvcc

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metastore/metastore/engine"
)

// Group commit: the server applies the entries of one raft Ready between
// BeginGroup and EndGroup. Puts, deletes and txns that read only single
// keys at the current revision ("groupable") then share one engine batch,
// written once by EndGroup with the last applied index: one RocksDB write
// for the whole Ready instead of one per entry. Every other apply, and
// every other user of the writer lock (compaction, subscriptions,
// restores), first writes the pending group out, so nothing else ever
// sees a half-written group.
//
// Inside a group each txn reads the state as of the txn before it: the
// latest record of every key the group wrote is kept in memory (kv) and
// consulted before the engine. Reads that would need an iterator (ranges,
// reads at an older revision) are what make a request not groupable.
// Nothing of a group is visible to readers before EndGroup publishes its
// revision, and a crash before the write loses the group whole; raft
// replays it from the applied index persisted before.
//
// Worked example: BeginGroup; Put(a) at index 7 -> rev 5 (pending);
// Txn(compare a.mod==5, put b) at index 8 -> sees a@5 in kv, rev 6
// (pending); Compact at index 9 -> writes the group (indexes 7-8, revs
// 5-6) and publishes rev 6, then compacts; EndGroup -> nothing pending.

// maxGroupTxns bounds the txns one group holds before it is written.
const maxGroupTxns = 512

// maxGroupBatchBytes bounds the size of a group's batch before it is
// written, whatever the txn count.
const maxGroupBatchBytes = 4 << 20

// group is the pending state of a group commit. REQUIRES: Store.mu held
// for every access.
type group struct {
	active bool
	// txns is the number of txns in the batch; 0: nothing pending.
	txns int
	// rev is the revision of the last pending txn that changed keys; 0
	// if none did.
	rev int64
	// kv holds the CFKV record of every key the pending txns wrote.
	kv map[string][]byte
	// pubs are the pending revisions' events for subscribers, in order.
	pubs []groupPub
	// afterCommit are the pending txns' in-memory effects, in order.
	afterCommit []func()
	// cdeltas are the pending txns' count index changes.
	cdeltas []countDelta
}

type groupPub struct {
	rev    int64
	events []mvccpb.Event
}

// undoEntry restores kv[key] when a txn of the group fails.
type undoEntry struct {
	key  string
	prev []byte
	had  bool
}

// BeginGroup starts a group commit: until EndGroup, groupable applies
// share one batch. Groups do not nest.
func (s *Store) BeginGroup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.group.active = true
}

// EndGroup writes the pending group out and ends it. An error is fatal to
// the caller, as a failed write of any apply.
func (s *Store) EndGroup() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.flushGroupLocked()
	s.mu.group.active = false
	return err
}

// flushGroupLocked writes the pending group, if any, with the applied
// index, then publishes its revision, runs its in-memory effects and
// hands its events to subscribers, in order.
// REQUIRES: s.mu held.
func (s *Store) flushGroupLocked() error {
	g := &s.mu.group
	if g.txns == 0 {
		return nil
	}
	b := s.mu.batch
	if err := s.writeAppliedLocked(b, s.applied.Load()); err != nil {
		return err
	}
	for k, v := range g.kv {
		s.lc.set(k, v)
	}
	if g.rev != 0 {
		if err := s.cidx.apply(s.db, g.cdeltas, g.rev); err != nil {
			return err
		}
		s.state.Store(&revState{rev: g.rev, compacted: s.state.Load().compacted})
	}
	for _, f := range g.afterCommit {
		f()
	}
	for _, p := range g.pubs {
		s.subs.publish(p.rev, p.events)
	}
	b.Reset()
	clear(g.kv)
	clear(g.pubs)
	g.pubs = g.pubs[:0]
	clear(g.afterCommit)
	g.afterCommit = g.afterCommit[:0]
	g.cdeltas = g.cdeltas[:0]
	g.txns, g.rev = 0, 0
	return nil
}

// groupedLocked reports whether a txn may join the pending group, writing
// the group out first when it may not (or the group is full).
// REQUIRES: s.mu held.
func (s *Store) groupedLocked(groupable bool) (bool, error) {
	g := &s.mu.group
	if g.active && groupable && g.txns < maxGroupTxns && s.mu.batch.Len() < maxGroupBatchBytes {
		return true, nil
	}
	return false, s.flushGroupLocked()
}

// groupSource is a txn's read source inside a group: the group's pending
// CFKV records, then the latest cache (which holds only what is written),
// over the engine. Iterators are never asked of it (see groupable*).
type groupSource struct {
	db *engine.DB
	kv map[string][]byte
	lc *latestCache
}

func (g groupSource) Get(cf engine.CF, key []byte) ([]byte, bool, error) {
	return g.GetAppend(nil, cf, key)
}

func (g groupSource) GetAppend(dst []byte, cf engine.CF, key []byte) ([]byte, bool, error) {
	if cf == engine.CFKV {
		if v, ok := g.kv[string(key)]; ok {
			return append(dst, v...), true, nil
		}
		if v, ok := g.lc.get(key); ok {
			return append(dst, v...), true, nil
		}
	}
	return g.db.GetAppend(dst, cf, key)
}

func (g groupSource) NewIterator(cf engine.CF, o engine.IterOptions) (*engine.Iterator, error) {
	return nil, fmt.Errorf("mvcc: iterator asked inside a group commit (a request was wrongly judged groupable)")
}

// groupablePut: a put reads at most its own key at the current revision.
func groupablePut(*pb.PutRequest) bool { return true }

// groupableDeleteRange: a single-key delete reads only that key.
func groupableDeleteRange(r *pb.DeleteRangeRequest) bool { return len(r.RangeEnd) == 0 }

// groupableTxn: every compare and every op, at any depth, touches a
// single key, and ranges read the current revision.
func groupableTxn(r *pb.TxnRequest) bool {
	for _, c := range r.Compare {
		if len(c.RangeEnd) != 0 {
			return false
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch {
			case op.GetRequestRange() != nil:
				rr := op.GetRequestRange()
				if len(rr.RangeEnd) != 0 || rr.Revision != 0 {
					return false
				}
			case op.GetRequestDeleteRange() != nil:
				if !groupableDeleteRange(op.GetRequestDeleteRange()) {
					return false
				}
			case op.GetRequestTxn() != nil:
				if !groupableTxn(op.GetRequestTxn()) {
					return false
				}
			}
		}
	}
	return true
}
