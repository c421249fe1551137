package raftlog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine/failpoint"
)

// Node runs one raft member: a raft.RawNode driven by one goroutine (the
// raft goroutine), persisting to a Storage, talking through a Transport and
// feeding an Applier from a second goroutine (the apply goroutine).
//
// Every exported method is safe for concurrent use. Methods that need the
// RawNode hand a closure to the raft goroutine (ctrlc); nothing else
// touches it.
type Node struct {
	cfg      Config
	st       *Storage
	tr       Transport
	snapTr   SnapshotSender // nil if tr does not implement it
	app      Applier
	lg       *zap.Logger
	fatal    func(msg string, fields ...zap.Field)
	stopOnce sync.Once

	// Raft goroutine only.
	rn         *raft.RawNode
	propBatch  []proposal
	confHist   []indexedConfState
	confWaits  map[string][]chan error
	isLeader   bool
	lastLeader uint64

	propc   chan proposal
	pending atomic.Int64 // proposals in propc
	recvc   chan raftpb.Message
	ctrlc   chan func()
	applyc  chan applyTask
	stopc   chan struct{} // closed by Stop
	done    chan struct{} // closed when the raft goroutine has exited
	applied *applyWait
	reads   *readIndexer

	// Published by the raft goroutine for any reader.
	lead      atomic.Uint64
	term      atomic.Uint64
	committed atomic.Uint64
	leaderMu  struct {
		sync.Mutex
		changed chan struct{} // closed at the next leader change
	}

	applyDone chan struct{}
	ctr       nodeCounters
}

// proposal is one Propose or ProposeAsync call: raft's answer goes to
// done (cap >= 1), where a synchronous Propose waits for it; the caller of
// ProposeAsync hears only of a refusal, through refused.
type proposal struct {
	data    []byte
	done    chan<- error
	refused func(error)
}

// indexedConfState is the ConfState in effect from index on.
type indexedConfState struct {
	index uint64
	cs    raftpb.ConfState
}

// applyTask is work for the apply goroutine: a snapshot to restore, or a
// Ready's committed entries.
type applyTask struct {
	snap       raftpb.Snapshot
	done       chan struct{} // if set, closed once the task is done
	ents       []raftpb.Entry
	confStates map[uint64]raftpb.ConfState
}

// StartNode starts a member on st. If st is empty (a new member) and peers
// is not, it bootstraps a new cluster of peers; a new member joining an
// existing cluster passes no peers and waits for the leader to contact it.
// If st holds state, the member restarts from it and peers is ignored.
//
// The node does not own st, tr or app: Stop the node before closing them.
func StartNode(cfg Config, st *Storage, tr Transport, app Applier, peers []Peer, lg *zap.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if lg == nil {
		lg = zap.NewNop()
	}
	lg = lg.With(zap.Uint64("member", cfg.ID))
	if !cfg.PreVote || !cfg.CheckQuorum {
		lg.Warn("raftlog: running without pre-vote or check-quorum; a rejoining member may disrupt the leader",
			zap.Bool("pre-vote", cfg.PreVote), zap.Bool("check-quorum", cfg.CheckQuorum))
	}
	hs, cs, err := st.InitialState()
	if err != nil {
		return nil, err
	}
	last, err := st.LastIndex()
	if err != nil {
		return nil, err
	}
	snap, err := st.Snapshot()
	if err != nil {
		return nil, err
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:            cfg.ID,
		ElectionTick:  cfg.ElectionTicks,
		HeartbeatTick: cfg.HeartbeatTicks,
		Storage:       st,
		// Applied is left 0: raft then hands back every committed entry
		// after the snapshot, so that conf changes replay into raft from the
		// snapshot's ConfState; the apply goroutine skips the entries the
		// Applier already has (etcd's consistent index does the same).
		MaxSizePerMsg:             cfg.MaxSizePerMsgBytes,
		MaxCommittedSizePerReady:  cfg.MaxCommittedSizePerReadyBytes,
		MaxUncommittedEntriesSize: cfg.MaxUncommittedEntriesBytes,
		MaxInflightMsgs:           cfg.MaxInflightMsgs,
		CheckQuorum:               cfg.CheckQuorum,
		PreVote:                   cfg.PreVote,
		ReadOnlyOption:            raft.ReadOnlySafe,
		StepDownOnRemoval:         true,
		Logger:                    newRaftLogger(lg),
	})
	if err != nil {
		return nil, err
	}
	if last == 0 && raft.IsEmptyHardState(hs) && len(peers) > 0 {
		rp := make([]raft.Peer, len(peers))
		for i, p := range peers {
			rp[i] = raft.Peer{ID: p.ID, Context: p.Context}
		}
		if err := rn.Bootstrap(rp); err != nil {
			return nil, err
		}
	}

	n := &Node{
		cfg:       cfg,
		st:        st,
		tr:        tr,
		app:       app,
		lg:        lg,
		rn:        rn,
		confHist:  []indexedConfState{{snap.Metadata.Index, cs}},
		confWaits: make(map[string][]chan error),
		propc:     make(chan proposal, cfg.MaxPendingProposals),
		recvc:     make(chan raftpb.Message, recvQueueMsgs),
		ctrlc:     make(chan func(), ctrlQueueOps),
		applyc:    make(chan applyTask, applyQueueReadies),
		stopc:     make(chan struct{}),
		done:      make(chan struct{}),
		applyDone: make(chan struct{}),
		applied:   newApplyWait(app.AppliedIndex()),
		reads:     newReadIndexer(cfg.MaxPendingReads, cfg.ReadIndexRetryInterval),
	}
	n.leaderMu.changed = make(chan struct{})
	n.fatal = lg.Fatal
	n.snapTr, _ = tr.(SnapshotSender)
	n.term.Store(hs.Term)
	n.committed.Store(hs.Commit)
	lg.Info("raftlog: starting member",
		zap.Uint64("term", hs.Term), zap.Uint64("commit", hs.Commit),
		zap.Uint64("last-index", last), zap.Uint64("snapshot-index", snap.Metadata.Index),
		zap.Uint64("applied-index", app.AppliedIndex()), zap.Int("bootstrap-peers", len(peers)))
	go n.run()
	go n.applyLoop()
	return n, nil
}

// Stop stops the node and waits for its goroutines. Calls in progress and
// later calls fail with ErrStopped. Committed entries not yet applied are
// dropped; raft hands them back after a restart. Stop is idempotent.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopc) })
	<-n.done
	<-n.applyDone
}

// run is the raft goroutine.
func (n *Node) run() {
	defer close(n.done)
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			n.rn.Tick()
			n.reads.maybeRetry(n.rn, time.Now())
		case p := <-n.propc:
			n.propose(p)
		case m := <-n.recvc:
			n.step(m)
			for i := 1; i < maxStepsPerLoop; i++ {
				select {
				case m := <-n.recvc:
					n.step(m)
					continue
				default:
				}
				break
			}
		case f := <-n.ctrlc:
			f()
		case <-n.reads.notify:
			n.reads.maybeStart(n.rn, time.Now())
		case <-n.stopc:
			n.reads.fail(ErrStopped, true)
			return
		}
		for n.rn.HasReady() {
			if !n.handleReady() {
				return
			}
		}
	}
}

func (n *Node) step(m raftpb.Message) {
	if err := n.rn.Step(m); err != nil {
		n.lg.Debug("raftlog: dropped inbound message", zap.Stringer("type", m.Type),
			zap.Uint64("from", m.From), zap.Error(err))
	}
}

// propose merges first and the proposals queued behind it into one
// MsgProp: the leader appends them as one run of entries, a follower
// forwards them as one message. The batch ends at MaxProposalBatch
// proposals, or once its data reaches MaxProposalBatchBytes (so it exceeds
// that by less than one proposal).
func (n *Node) propose(first proposal) {
	batch := append(n.propBatch[:0], first)
	size := uint64(len(first.data))
	for len(batch) < n.cfg.MaxProposalBatch && size < n.cfg.MaxProposalBatchBytes {
		var p proposal
		more := false
		select {
		case p = <-n.propc:
			more = true
		default:
		}
		if !more {
			break
		}
		batch = append(batch, p)
		size += uint64(len(p.data))
	}
	n.pending.Add(-int64(len(batch)))
	ents := make([]raftpb.Entry, len(batch))
	for i := range batch {
		ents[i].Data = batch[i].data
	}
	err := n.rn.Step(raftpb.Message{Type: raftpb.MsgProp, From: n.cfg.ID, Entries: ents})
	err = n.proposeError(err)
	n.ctr.proposals.add(uint64(len(ents)))
	n.ctr.proposalBatches.add(1)
	for i := range batch {
		switch p := &batch[i]; {
		case p.done != nil:
			p.done <- err
		case err != nil && p.refused != nil:
			p.refused(err)
		}
		batch[i] = proposal{}
	}
	n.propBatch = batch[:0]
}

// proposeError maps raft's refusal of a proposal to the error etcd returns.
// Raft goroutine only.
func (n *Node) proposeError(err error) error {
	if !errors.Is(err, raft.ErrProposalDropped) {
		return err
	}
	st := n.rn.BasicStatus()
	switch {
	case st.Lead == raft.None:
		return ErrNoLeader
	case st.RaftState == raft.StateLeader && st.LeadTransferee == raft.None:
		// The leader refuses proposals beyond MaxUncommittedEntriesBytes
		// (or when it was removed from the configuration).
		return ErrTooManyRequests
	default:
		return ErrProposalDropped
	}
}

// handleReady processes one Ready: persist, send, hand committed entries to
// the apply goroutine, Advance. It returns false when the node stopped
// while waiting for the apply queue.
//
// Order (raft's Ready contract; etcd server/etcdserver/raft.go):
//  1. A leader sends its messages first, except the responses raft queues
//     behind the local append (MsgAppResp, MsgVoteResp, MsgPreVoteResp): its
//     MsgApps go out while its own fsync runs (raft thesis 10.2.1).
//  2. A snapshot is installed by the Applier (after the entries queued
//     before it), then snapshot metadata, entries and hard state are
//     persisted in one batch, synced when raft needs it (Storage.Save). A
//     failed write is fatal.
//  3. Committed conf changes are applied to raft, then the committed
//     entries are queued, in order, for the apply goroutine.
//     Committed entries of a follower may be in this very Ready's Entries;
//     they are applied only after step 2 made them durable.
//  4. Everything else is sent (all of a follower's messages: its acks and
//     votes promise durable state), then Advance.
func (n *Node) handleReady() bool {
	rd := n.rn.Ready()
	n.ctr.readies.add(1)
	if rd.SoftState != nil {
		n.onSoftState(*rd.SoftState)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		n.term.Store(rd.HardState.Term)
		n.committed.Store(rd.HardState.Commit)
	}
	if len(rd.ReadStates) > 0 {
		n.reads.onReadStates(rd.ReadStates)
	}

	later := rd.Messages
	if n.isLeader {
		var now []raftpb.Message
		now, later = splitAfterAppend(rd.Messages)
		n.send(now)
	}

	if !raft.IsEmptySnap(rd.Snapshot) {
		// The state goes in before the log says it exists: a crash between
		// the two leaves the state ahead of the log, which is safe (raft
		// replays entries the apply goroutine skips), where the other order
		// would leave a log starting past the state, with nothing to fill
		// the gap (the snapshot's data is not kept).
		if !n.restoreSnapshot(rd.Snapshot) {
			return false
		}
		n.confHist = []indexedConfState{{rd.Snapshot.Metadata.Index, rd.Snapshot.Metadata.ConfState}}
	}
	// Committed entries that are already durable here go to the apply
	// goroutine before this Ready's fsync, so applying batch N overlaps
	// persisting batch N+1 (etcd does the same). On a leader that is every
	// committed entry; a follower may be told of commits for entries it
	// has not persisted yet (they arrive in rd.Entries), and those wait for
	// the save below, so the state never gets ahead of the local log.
	appliedEarly := false
	if c := len(rd.CommittedEntries); c > 0 && raft.IsEmptySnap(rd.Snapshot) &&
		n.entriesStable(rd.CommittedEntries[c-1].Index, rd.Entries) {
		if !n.enqueueCommitted(rd.CommittedEntries) {
			return false
		}
		appliedEarly = true
	}
	persisted := rd.Snapshot
	persisted.Data = nil // the snapshot kept by Storage is metadata only
	if failpoint.Enabled {
		_ = failpoint.Inject(failpoint.RaftBeforeSave) // panic/exit/sleep only
	}
	if err := n.st.Save(rd.HardState, rd.Entries, persisted); err != nil {
		n.fatal("raftlog: persisting raft state failed", zap.Error(err),
			zap.Int("entries", len(rd.Entries)), zap.Uint64("snapshot-index", rd.Snapshot.Metadata.Index))
		return false
	}
	if failpoint.Enabled {
		_ = failpoint.Inject(failpoint.RaftAfterSave) // panic/exit/sleep only
	}
	if len(rd.CommittedEntries) > 0 && !appliedEarly {
		if !n.enqueueCommitted(rd.CommittedEntries) {
			return false
		}
	}
	n.send(later)
	n.rn.Advance(rd)
	n.reads.maybeStart(n.rn, time.Now())
	return true
}

// entriesStable reports whether every entry up to index is in the local
// log already: at or below its last persisted index and not about to be
// overwritten by unstable (the entries this Ready persists).
func (n *Node) entriesStable(index uint64, unstable []raftpb.Entry) bool {
	if len(unstable) > 0 && unstable[0].Index <= index {
		return false
	}
	last, err := n.st.LastIndex()
	return err == nil && index <= last
}

// enqueueCommitted adopts the conf changes among ents and queues them all
// for the apply goroutine. It returns false if the node stopped.
func (n *Node) enqueueCommitted(ents []raftpb.Entry) bool {
	return n.enqueueApply(applyTask{ents: ents, confStates: n.applyConfChanges(ents)})
}

// restoreSnapshot has the apply goroutine install snap after the entries
// queued before it, and waits for it. It returns false if the node stopped.
func (n *Node) restoreSnapshot(snap raftpb.Snapshot) bool {
	done := make(chan struct{})
	if !n.enqueueApply(applyTask{snap: snap, done: done}) {
		return false
	}
	select {
	case <-done:
		return true
	case <-n.stopc:
		n.reads.fail(ErrStopped, true)
		return false
	}
}

// enqueueApply queues t for the apply goroutine, waiting while
// applyQueueReadies tasks are queued. It returns false if the node stopped.
func (n *Node) enqueueApply(t applyTask) bool {
	select {
	case n.applyc <- t:
		return true
	case <-n.stopc:
		n.reads.fail(ErrStopped, true)
		return false
	}
}

// splitAfterAppend separates the responses raft wants sent only after the
// local append is durable from the rest.
func splitAfterAppend(msgs []raftpb.Message) (now, later []raftpb.Message) {
	for _, m := range msgs {
		switch m.Type {
		case raftpb.MsgAppResp, raftpb.MsgVoteResp, raftpb.MsgPreVoteResp:
			later = append(later, m)
		default:
			now = append(now, m)
		}
	}
	return now, later
}

// send hands messages to the transport, at most maxMessagesPerSend per
// call, and MsgSnap to the SnapshotSender if there is one.
func (n *Node) send(msgs []raftpb.Message) {
	out := msgs[:0:0]
	for _, m := range msgs {
		if m.Type == raftpb.MsgSnap {
			m = n.restampSnapshot(m)
			n.ctr.snapshotsSent.add(1)
			if n.snapTr != nil {
				n.snapTr.SendSnapshot(m)
				continue
			}
		}
		out = append(out, m)
	}
	for len(out) > 0 {
		k := min(len(out), maxMessagesPerSend)
		n.tr.Send(out[:k:k])
		out = out[k:]
	}
}

// restampSnapshot gives a MsgSnap the index, term and ConfState the Applier
// has reached, in place of those of the last log truncation, which raft put
// there (etcd's createMergedSnapshotMessage does the same). The state the
// transport streams is at least that new, so nothing is lost; and the
// ConfState must be recent: a member added after the last truncation is
// not in the truncation's ConfState, and raft ignores a snapshot that does
// not name the recipient, so that member would be sent the same snapshot
// forever. If the Applier has not yet applied the recipient's addition the
// recipient still ignores it, and raft sends a newer one on its next
// probe. Raft goroutine only.
func (n *Node) restampSnapshot(m raftpb.Message) raftpb.Message {
	applied := n.applied.applied()
	if m.Snapshot == nil || applied <= m.Snapshot.Metadata.Index {
		return m
	}
	term, err := n.st.Term(applied)
	if err != nil {
		// Applied entries are never truncated (CompactLog clamps to the
		// applied index), so this is a broken invariant.
		n.lg.Panic("raftlog: no term for the applied index", zap.Uint64("applied-index", applied), zap.Error(err))
	}
	snap := *m.Snapshot // shared with raft: change a copy
	snap.Metadata = raftpb.SnapshotMetadata{Index: applied, Term: term, ConfState: n.confStateAt(applied)}
	m.Snapshot = &snap
	return m
}

// onSoftState publishes a change of leader or role.
func (n *Node) onSoftState(ss raft.SoftState) {
	n.isLeader = ss.RaftState == raft.StateLeader
	if ss.Lead == n.lastLeader {
		return
	}
	n.lg.Info("raftlog: leader changed", zap.Uint64("from", n.lastLeader), zap.Uint64("to", ss.Lead),
		zap.Stringer("role", ss.RaftState))
	prev := n.lastLeader
	n.lastLeader = ss.Lead
	n.lead.Store(ss.Lead)
	n.ctr.leaderChanges.add(1)
	if prev == raft.None {
		// Raft dropped a round sent while there was no leader: send it to
		// the new one now rather than at the next retry.
		n.reads.resend(n.rn, time.Now())
	} else {
		// A round sent to the old leader may never be answered, or be
		// answered from a term that is over; its callers retry (etcd answers
		// ErrLeaderChanged too).
		n.reads.fail(ErrLeaderChanged, false)
	}
	n.leaderMu.Lock()
	close(n.leaderMu.changed)
	n.leaderMu.changed = make(chan struct{})
	n.leaderMu.Unlock()
}

// applyConfChanges applies the committed conf changes among ents to raft
// and returns the resulting ConfStates by entry index (nil if none). Raft
// goroutine only.
//
// Changes are applied to raft when they are handed to the apply goroutine,
// not when the Applier gets to them: raft may then count the new
// configuration's votes before the Applier has recorded it, which is what
// raft expects (etcd has followers wait for the apply instead). The
// Applier learns the ConfState with the entry.
func (n *Node) applyConfChanges(ents []raftpb.Entry) map[uint64]raftpb.ConfState {
	var out map[uint64]raftpb.ConfState
	for i := range ents {
		e := &ents[i]
		var cc raftpb.ConfChangeI
		switch e.Type {
		case raftpb.EntryConfChange:
			var c raftpb.ConfChange
			if err := c.Unmarshal(e.Data); err != nil {
				n.lg.Panic("raftlog: undecodable conf change", zap.Uint64("index", e.Index), zap.Error(err))
			}
			cc = c
		case raftpb.EntryConfChangeV2:
			var c raftpb.ConfChangeV2
			if err := c.Unmarshal(e.Data); err != nil {
				n.lg.Panic("raftlog: undecodable conf change", zap.Uint64("index", e.Index), zap.Error(err))
			}
			cc = c
		default:
			continue
		}
		cs := *n.rn.ApplyConfChange(cc)
		if out == nil {
			out = make(map[uint64]raftpb.ConfState)
		}
		out[e.Index] = cs
		n.confHist = append(n.confHist, indexedConfState{e.Index, cs})
		n.lg.Info("raftlog: applied conf change", zap.Uint64("index", e.Index),
			zap.Stringer("conf-state", &cs))
		key := confChangeKey(e.Type, e.Data)
		for _, ch := range n.confWaits[key] {
			ch <- nil
		}
		delete(n.confWaits, key)
	}
	return out
}

func confChangeKey(t raftpb.EntryType, data []byte) string {
	return string(append([]byte{byte(t)}, data...))
}

// confStateAt returns the ConfState in effect at index. Raft goroutine only.
// REQUIRES: index >= confHist[0].index.
func (n *Node) confStateAt(index uint64) raftpb.ConfState {
	cs := n.confHist[0].cs
	for _, h := range n.confHist {
		if h.index > index {
			break
		}
		cs = h.cs
	}
	return cs
}

// applyLoop is the apply goroutine: it applies tasks in order.
func (n *Node) applyLoop() {
	defer close(n.applyDone)
	for {
		select {
		case t := <-n.applyc:
			n.apply(t)
		case <-n.stopc:
			return
		}
	}
}

func (n *Node) apply(t applyTask) {
	if t.done != nil {
		defer close(t.done)
	}
	if !raft.IsEmptySnap(t.snap) {
		if err := n.app.RestoreSnapshot(t.snap); err != nil {
			n.fatal("raftlog: restoring snapshot failed", zap.Error(err),
				zap.Uint64("snapshot-index", t.snap.Metadata.Index))
			return
		}
		n.ctr.snapshotsRestored.add(1)
		n.lg.Info("raftlog: restored snapshot", zap.Uint64("snapshot-index", t.snap.Metadata.Index),
			zap.Uint64("applied-index", n.app.AppliedIndex()))
	}
	ents := t.ents
	applied := n.app.AppliedIndex()
	for len(ents) > 0 && ents[0].Index <= applied {
		ents = ents[1:]
	}
	if len(ents) > 0 {
		if ents[0].Index != applied+1 {
			n.lg.Panic("raftlog: committed entries skip past the applied index",
				zap.Uint64("first-index", ents[0].Index), zap.Uint64("applied-index", applied))
		}
		n.app.Apply(ents, t.confStates)
		applied = n.app.AppliedIndex()
		if want := ents[len(ents)-1].Index; applied != want {
			n.lg.Panic("raftlog: Applier did not advance its applied index",
				zap.Uint64("applied-index", applied), zap.Uint64("want", want))
		}
	}
	n.applied.trigger(applied)
}

// Propose proposes data as one log entry; data is raft's from then on and
// must not be modified. Concurrent proposals are merged
// into one MsgProp (up to MaxProposalBatch) and so persisted with one
// fsync. It returns once raft accepted the entry (appended by a leader,
// forwarded by a follower), not once it commits: like etcd, the caller
// learns of the commit from its Applier, and a proposal may still be lost
// (leader change, dropped forward), so callers wait with a deadline.
//
// Errors: ErrTooManyRequests (MaxPendingProposals queued, the commit-apply
// gap above MaxApplyGapEntries, or the leader's uncommitted log full),
// ErrNoLeader, ErrProposalDropped (e.g. during a leadership transfer),
// ErrStopped, or ctx's error.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	done := make(chan error, 1)
	if err := n.enqueueProposal(ctx, proposal{data: data, done: done}); err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrStopped
	}
}

// ProposeAsync is Propose without the wait for raft to take the entry: it
// returns once the proposal is queued (or with Propose's errors if it
// cannot be), and if raft then refuses the entry, refused is called with
// the error, on the raft goroutine: it must not block. An entry raft takes
// calls nothing: its caller learns of the commit from its Applier, as with
// Propose, and so waits for the Applier, the refusal, its deadline or
// Done. It spares the caller a wake-up per proposal, which a busy member
// pays on every write.
func (n *Node) ProposeAsync(ctx context.Context, data []byte, refused func(error)) error {
	return n.enqueueProposal(ctx, proposal{data: data, refused: refused})
}

// enqueueProposal queues p for the raft goroutine, or refuses it.
func (n *Node) enqueueProposal(ctx context.Context, p proposal) error {
	select {
	case <-n.stopc:
		return ErrStopped // else the select below may queue it in a dead channel
	default:
	}
	if c, a := n.committed.Load(), n.applied.applied(); c > a+n.cfg.MaxApplyGapEntries {
		n.ctr.proposalsRejected.add(1)
		return ErrTooManyRequests
	}
	if n.pending.Add(1) > int64(n.cfg.MaxPendingProposals) {
		n.pending.Add(-1)
		n.ctr.proposalsRejected.add(1)
		return ErrTooManyRequests
	}
	select {
	case n.propc <- p:
		return nil
	case <-ctx.Done():
		n.pending.Add(-1)
		return ctx.Err()
	case <-n.stopc:
		n.pending.Add(-1)
		return ErrStopped
	}
}

// Done is closed once the node's raft goroutine has exited (Stop): a
// proposal queued by ProposeAsync and not yet answered will never be.
func (n *Node) Done() <-chan struct{} { return n.done }

// ReadIndex returns an index such that a read served from the state
// machine once it has applied that index (WaitApplied) is linearizable.
// Concurrent callers share one raft ReadIndex round; a caller arriving
// while a round is in flight waits for the next one.
//
// Errors: ErrTooManyRequests (MaxPendingReads waiting), ErrLeaderChanged
// (the leader changed during the round; retry), ErrStopped, or ctx's error
// (e.g. a member cut off from the majority waits until its deadline).
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	ch, err := n.reads.enqueue()
	if err != nil {
		return 0, err
	}
	return n.waitRead(ctx, ch)
}

// WaitApplied returns when the Applier has applied index, or ctx's error,
// or ErrStopped.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	select {
	case <-n.applied.wait(index):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrStopped
	}
}

// AppliedIndex returns the applied index the node last observed.
func (n *Node) AppliedIndex() uint64 { return n.applied.applied() }

// ProposeConfChange proposes a membership change and returns once it has
// been committed and applied to raft (the Applier gets it with its
// ConfState in the same order as other entries). A change raft refuses
// (another is still pending, or it does not fit the current configuration)
// is dropped as raft drops it, and the call waits until ctx ends; callers
// use a deadline, as with etcd's member API.
func (n *Node) ProposeConfChange(ctx context.Context, cc raftpb.ConfChangeV2) error {
	typ, data, err := raftpb.MarshalConfChange(cc)
	if err != nil {
		return err
	}
	key := confChangeKey(typ, data)
	ch := make(chan error, 1)
	err = n.onRaft(ctx, func() {
		var total int
		for _, w := range n.confWaits {
			total += len(w)
		}
		if total >= maxPendingConfChanges {
			ch <- ErrTooManyRequests
			return
		}
		if err := n.rn.ProposeConfChange(cc); err != nil {
			ch <- n.proposeError(err)
			return
		}
		n.confWaits[key] = append(n.confWaits[key], ch)
	})
	if err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		// Best effort: if the control queue is full the waiter stays until
		// its change applies (it counts against maxPendingConfChanges).
		select {
		case n.ctrlc <- func() { n.forgetConfWait(key, ch) }:
		default:
		}
		return ctx.Err()
	case <-n.done:
		return ErrStopped
	}
}

func (n *Node) forgetConfWait(key string, ch chan error) {
	w := n.confWaits[key]
	for i, c := range w {
		if c == ch {
			w = append(w[:i:i], w[i+1:]...)
			break
		}
	}
	if len(w) == 0 {
		delete(n.confWaits, key)
	} else {
		n.confWaits[key] = w
	}
}

// TransferLeadership asks the leader to hand leadership to transferee and
// returns once transferee leads. ErrTimeout if ctx ends first (raft also
// abandons a transfer that takes longer than an election timeout).
func (n *Node) TransferLeadership(ctx context.Context, transferee uint64) error {
	if err := n.onRaft(ctx, func() { n.rn.TransferLeader(transferee) }); err != nil {
		return err
	}
	for {
		ch := n.LeaderChanges()
		if n.Leader() == transferee {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: leadership transfer to %x: %w", ErrTimeout, transferee, ctx.Err())
		case <-n.done:
			return ErrStopped
		}
	}
}

// Step hands an inbound message from the transport to raft. It blocks
// while recvQueueMsgs messages wait, until ctx ends.
func (n *Node) Step(ctx context.Context, m raftpb.Message) error {
	select {
	case <-n.stopc:
		return ErrStopped
	default:
	}
	select {
	case n.recvc <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return ErrStopped
	}
}

// ReportUnreachable tells raft that the last send to id failed. It never
// blocks; a report that finds the control queue full is dropped (raft
// probes again anyway).
func (n *Node) ReportUnreachable(id uint64) {
	select {
	case n.ctrlc <- func() { n.rn.ReportUnreachable(id) }:
	default:
	}
}

// ReportSnapshot tells raft how sending a snapshot to id ended. It must
// follow every MsgSnap (see SnapshotSender) and is never dropped: it
// blocks until the raft goroutine takes it or the node stops.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	select {
	case n.ctrlc <- func() { n.rn.ReportSnapshot(id, status) }:
	case <-n.stopc:
	}
}

// CompactLog discards the raft log up to and including index, recording
// raft's snapshot metadata (index, term, ConfState) at the cut in the same
// batch. The server calls it with an index some catch-up entries (etcd:
// SnapshotCatchUpEntries, 5000) below the state it has written to the
// engine, so that a slightly lagging follower still catches up from the
// log; one that lags more gets a MsgSnap and an engine checkpoint from the
// transport. index is clamped to the Applier's and raft's applied indexes;
// at or below the current first index it is a no-op. The deletion enters
// the RocksDB WAL after the applied state it relies on, so no crash can
// keep the one without the other.
func (n *Node) CompactLog(index uint64) error {
	var err error
	if rerr := n.onRaft(context.Background(), func() { err = n.compactLog(index) }); rerr != nil {
		return rerr
	}
	return err
}

// Raft goroutine only.
func (n *Node) compactLog(index uint64) error {
	c := min(index, n.rn.BasicStatus().Applied, n.app.AppliedIndex())
	first, _ := n.st.FirstIndex()
	snap, _ := n.st.Snapshot()
	if c < first || c <= snap.Metadata.Index {
		return nil
	}
	if err := n.st.SnapshotAndCompact(c, n.confStateAt(c)); err != nil {
		return err
	}
	k := 0
	for k+1 < len(n.confHist) && n.confHist[k+1].index <= c {
		k++
	}
	n.confHist = append([]indexedConfState{{c, n.confHist[k].cs}}, n.confHist[k+1:]...)
	n.lg.Debug("raftlog: compacted log", zap.Uint64("compact-index", c))
	return nil
}

// Status returns raft's status (with progress of followers on a leader);
// the zero Status once stopped.
func (n *Node) Status() raft.Status {
	var st raft.Status
	_ = n.onRaft(context.Background(), func() { st = n.rn.Status() })
	return st
}

// Leader returns the current leader's ID, 0 if none is known.
func (n *Node) Leader() uint64 { return n.lead.Load() }

// Term returns the current term.
func (n *Node) Term() uint64 { return n.term.Load() }

// IsLeader reports whether this member leads.
func (n *Node) IsLeader() bool { return n.lead.Load() == n.cfg.ID }

// ID returns this member's ID.
func (n *Node) ID() uint64 { return n.cfg.ID }

// LeaderChanges returns a channel closed at the next change of leader
// (including to none). Take a new channel after each change; read Leader
// after taking the channel to avoid missing one.
func (n *Node) LeaderChanges() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderMu.changed
}

// onRaft runs f on the raft goroutine and waits for it.
func (n *Node) onRaft(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case n.ctrlc <- func() { f(); close(ran) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return ErrStopped
	}
	select {
	case <-ran:
		return nil
	case <-n.done:
		return ErrStopped
	}
}
