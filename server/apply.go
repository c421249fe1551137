package server

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/engine/failpoint"
	"github.com/metastore/metastore/mvcc"
)

// applier adapts the server to raftlog's Applier: committed entries arrive
// here in log order, on one goroutine.
type applier Server

// applyResult of a compaction: the channel closes when the compaction has
// physically finished.
type compactResult struct {
	resp *pb.CompactionResponse
	done <-chan struct{}
}

func (a *applier) AppliedIndex() uint64 { return (*Server)(a).applied.Load() }

// Apply applies committed entries in order. confStates holds, for each conf
// change entry's index, the configuration raft adopted.
//
// The entries share one group commit (mvcc/group.go): puts, deletes and
// txns on single keys go to the engine in one write at the end instead of
// one each. So nobody learns of an entry before that write, the answers to
// the clients and the applied index wait for it too.
func (a *applier) Apply(ents []raftpb.Entry, confStates map[uint64]raftpb.ConfState) {
	s := (*Server)(a)
	answers := s.applyAnswers[:0]
	var last, bytes uint64
	s.kv.BeginGroup()
	for i := range ents {
		e := &ents[i]
		if e.Index <= s.applied.Load() {
			continue // replayed after a restart: its effects are already persisted
		}
		switch e.Type {
		case raftpb.EntryNormal:
			if id, res, ok := s.applyNormal(e); ok {
				answers = append(answers, pendingAnswer{id: id, res: res})
			}
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			s.applyConfChange(e, confStates[e.Index])
		}
		last = e.Index
		bytes += uint64(len(e.Data))
	}
	if err := s.kv.EndGroup(); err != nil {
		// As a failed write of a single entry (applyNormal): the engine's
		// state is unknown; on restart the raft log replays the group.
		s.lg.Fatal("writing a group of applied raft entries to the engine failed",
			zap.Uint64("last-index", last), zap.Error(err))
	}
	if failpoint.Enabled {
		_ = failpoint.Inject(failpoint.ApplyAfterBatch) // written with its index, not answered
	}
	if last != 0 {
		s.appliedBytes.Add(bytes) // before applied: a sample's bytes cover its index
		s.applied.Store(last)
	}
	for _, a := range answers {
		s.waits.Trigger(a.id, a.res)
	}
	clear(answers)
	s.applyAnswers = answers[:0]
}

// pendingAnswer is an applied request's result waiting for its group's
// write before the proposer hears of it.
type pendingAnswer struct {
	id  uint64
	res result
}

// applyNormal applies one normal entry and returns the result to hand its
// proposer (ok false: nobody to answer).
func (s *Server) applyNormal(e *raftpb.Entry) (id uint64, res result, ok bool) {
	if len(e.Data) == 0 {
		// The empty entry a new leader appends; nothing to persist: replaying
		// it after a crash is harmless.
		return 0, result{}, false
	}
	var r pb.InternalRaftRequest
	if err := r.Unmarshal(e.Data); err != nil {
		s.lg.Panic("undecodable raft entry", zap.Uint64("index", e.Index), zap.Error(err))
	}
	if failpoint.Enabled {
		_ = failpoint.Inject(failpoint.ApplyBeforeBatch) // panic/exit/sleep only
	}
	res = s.applyObserved(e.Index, &r) // applyRequest, timed and counted (metrics.go)
	if errors.Is(res.err, mvcc.ErrWriteFailed) {
		// The data engine refused a write (disk full, I/O error): its state
		// is unknown, and going on would mark this entry applied without its
		// effects. Stop; on restart the raft log replays it.
		s.lg.Fatal("applying a raft entry failed to write to the engine", zap.Uint64("index", e.Index), zap.Error(res.err))
	}
	if r.Header == nil {
		return 0, result{}, false
	}
	return r.Header.ID, res, true
}

// applyRequest applies one request at raft index idx. Every branch persists
// idx atomically with its effects, including the ones that fail: a failed
// request is still applied (as a no-op) and must not be replayed.
func (s *Server) applyRequest(idx uint64, r *pb.InternalRaftRequest) result {
	if err := s.alarms.refuse(r); err != nil {
		s.kv.ApplyMeta(idx, nil)
		return result{err: err}
	}
	if err := s.authorizeApply(r); err != nil { // auth_check.go
		s.ensureApplied(idx)
		return result{err: err}
	}
	if isAuthRequest(r) {
		return s.applyAuth(idx, r) // auth_service.go
	}
	switch {
	case r.Put != nil:
		resp, err := s.kv.Put(idx, r.Put)
		return s.afterWrite(idx, resp, err)
	case r.DeleteRange != nil:
		resp, err := s.kv.DeleteRange(idx, r.DeleteRange)
		return s.afterWrite(idx, resp, err)
	case r.Txn != nil:
		resp, err := s.kv.Txn(idx, r.Txn)
		return s.afterWrite(idx, resp, err)
	case r.Compaction != nil:
		done, err := s.kv.Compact(idx, r.Compaction.Revision)
		if err != nil {
			s.ensureApplied(idx)
			return result{err: err}
		}
		return result{resp: &compactResult{resp: &pb.CompactionResponse{}, done: done}}
	case r.LeaseGrant != nil:
		return s.lessor.applyGrant(idx, r.LeaseGrant)
	case r.LeaseRevoke != nil:
		return s.lessor.applyRevoke(idx, r.LeaseRevoke)
	case r.LeaseCheckpoint != nil:
		return s.lessor.applyCheckpoint(idx, r.LeaseCheckpoint)
	case r.Alarm != nil:
		return s.alarms.apply(idx, r.Alarm)
	case r.ClusterMemberAttrSet != nil:
		return s.applyMemberAttributes(idx, r.ClusterMemberAttrSet)
	default:
		s.ensureApplied(idx)
		return result{err: fmt.Errorf("server: unsupported request in raft entry %d", idx)}
	}
}

// afterWrite makes sure a failed write still records its index.
func (s *Server) afterWrite(idx uint64, resp any, err error) result {
	if err != nil {
		s.ensureApplied(idx)
		return result{err: err}
	}
	return result{resp: resp}
}

// ensureApplied records idx as applied when the store did not (a request
// that failed validation at apply time changes nothing else).
func (s *Server) ensureApplied(idx uint64) {
	if s.kv.AppliedIndex() >= idx {
		return
	}
	if err := s.kv.ApplyMeta(idx, nil); err != nil {
		s.lg.Fatal("persisting applied index failed", zap.Uint64("index", idx), zap.Error(err))
	}
}

// confContext travels in a conf change's Context: the request ID to answer
// and the member being added or updated.
type confContext struct {
	ID     uint64  `json:"id"`
	Member *Member `json:"member,omitempty"`
}

func encodeConfContext(id uint64, m *Member) []byte {
	b, err := json.Marshal(confContext{ID: id, Member: m})
	if err != nil {
		panic(err)
	}
	return b
}

// confChangeResult answers a membership request.
type confChangeResult struct {
	members []*Member
}

func (s *Server) applyConfChange(e *raftpb.Entry, cs raftpb.ConfState) {
	var cc raftpb.ConfChangeV2
	switch e.Type {
	case raftpb.EntryConfChange:
		var v1 raftpb.ConfChange
		if err := v1.Unmarshal(e.Data); err != nil {
			s.lg.Panic("undecodable conf change", zap.Uint64("index", e.Index), zap.Error(err))
		}
		cc = v1.AsV2()
	default:
		if err := cc.Unmarshal(e.Data); err != nil {
			s.lg.Panic("undecodable conf change", zap.Uint64("index", e.Index), zap.Error(err))
		}
	}
	var ctx confContext
	if len(cc.Context) > 0 {
		if err := json.Unmarshal(cc.Context, &ctx); err != nil {
			s.lg.Panic("undecodable conf change context", zap.Uint64("index", e.Index), zap.Error(err))
		}
	}
	var removedSelf bool
	err := s.kv.ApplyMeta(e.Index, func(b *engine.Batch) error {
		for _, ch := range cc.Changes {
			switch ch.Type {
			case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
				m := ctx.Member
				if m == nil || m.ID != ch.NodeID {
					// Promotion of a learner arrives as AddNode without a member.
					m = s.cluster.Member(ch.NodeID)
					if m == nil {
						return fmt.Errorf("conf change adds unknown member %016x", ch.NodeID)
					}
				}
				m = m.clone()
				m.IsLearner = ch.Type == raftpb.ConfChangeAddLearnerNode
				s.cluster.setMember(m)
				b.Put(engine.CFMeta, memberKey(m.ID), encodeMember(m))
				if m.ID != s.memberID {
					s.tr.AddPeer(m.ID, m.PeerURLs)
				}
			case raftpb.ConfChangeRemoveNode:
				s.cluster.removeMember(ch.NodeID)
				b.Delete(engine.CFMeta, memberKey(ch.NodeID))
				b.Put(engine.CFMeta, removedKey(ch.NodeID), nil)
				if ch.NodeID == s.memberID {
					removedSelf = true
				} else {
					s.tr.RemovePeer(ch.NodeID)
				}
			case raftpb.ConfChangeUpdateNode:
				if ctx.Member != nil {
					s.cluster.setMember(ctx.Member)
					b.Put(engine.CFMeta, memberKey(ctx.Member.ID), encodeMember(ctx.Member))
					if ctx.Member.ID != s.memberID {
						s.tr.UpdatePeer(ctx.Member.ID, ctx.Member.PeerURLs)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		s.lg.Panic("applying conf change failed", zap.Uint64("index", e.Index), zap.Error(err))
	}
	for _, ch := range cc.Changes {
		// Audit trail of membership changes, one line each.
		s.lg.Info("audit: membership change applied",
			zap.String("change", ch.Type.String()),
			zap.String("member-id", fmt.Sprintf("%016x", ch.NodeID)),
			zap.Uint64("raft-index", e.Index))
	}
	if ctx.ID != 0 {
		s.waits.Trigger(ctx.ID, result{resp: &confChangeResult{members: s.cluster.Members()}})
	}
	if removedSelf {
		s.lg.Warn("this member was removed from the cluster; stopping")
		go s.Stop()
	}
}

// propose replicates r through raft and waits for its apply result, at
// most RequestTimeout (context.DeadlineExceeded after it, as a context
// with that timeout would say), or errStopped once the member stops.
func (s *Server) propose(ctx context.Context, r *pb.InternalRaftRequest) (_ any, err error) {
	id := s.ids.next()
	r.Header = &pb.RequestHeader{ID: id}
	if err := s.fillAuthHeader(ctx, r.Header); err != nil { // auth_check.go
		return nil, err
	}
	data, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	if len(data) > s.cfg.MaxRequestBytes {
		return nil, errRequestTooLarge
	}
	m := s.obs.metrics
	m.proposalStarted()
	defer m.proposalDone(&err) // proposals_pending, proposals_failed_total
	w := s.getWaiter(id)
	if err := s.node.ProposeAsync(ctx, data, w.refuse); err != nil {
		if s.waits.Cancel(id) {
			s.putWaiter(w) // raft never saw it: nothing will be sent on it
		}
		return nil, err
	}
	w.timer.Reset(s.cfg.RequestTimeout)
	select {
	case res := <-w.res:
		s.putWaiter(w)
		return res.resp, res.err
	case <-ctx.Done():
		// Not back to the pool: raft may still hold the entry and refuse
		// it later, calling w.refuse, which must not reach the request a
		// reused w would serve by then.
		s.waits.Cancel(id)
		w.timer.Stop()
		return nil, ctx.Err()
	}
}

// linearizableReadNotify returns once this member has applied everything
// committed before the call: a read after it is linearizable.
func (s *Server) linearizableReadNotify(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	idx, err := s.node.ReadIndex(ctx)
	if err != nil {
		return err
	}
	return s.node.WaitApplied(ctx, idx)
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func beBytes(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil when there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
