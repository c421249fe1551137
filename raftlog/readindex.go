package raftlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
)

// readIndexer batches linearizable reads: many concurrent ReadIndex callers
// share one raft ReadIndex round (one heartbeat broadcast on the leader).
//
// Callers queue in waiting. When no round is in flight, the raft goroutine
// starts one for everybody waiting, identified by a fresh request context
// (an 8-byte round id); callers arriving meanwhile wait for the next round.
// A round ends when raft returns a ReadState with its context (every member
// of the round gets its index), or fails with ErrLeaderChanged when the
// leader changes under it. An unanswered round (dropped message, no leader
// yet) is sent again every retry interval, as etcd does; callers' contexts
// bound how long they wait.
//
// Lock discipline: mu guards the queues; it is taken by callers and by the
// raft goroutine, never held while calling raft or blocking.
type readIndexer struct {
	maxPending int
	retry      time.Duration

	mu struct {
		sync.Mutex
		waiting  []chan readResult
		inflight *readRound
		nextID   uint64
	}
	notify chan struct{} // cap 1: callers are waiting

	rounds, retries counter
}

type readRound struct {
	rctx    []byte
	waiters []chan readResult
	sentAt  time.Time
}

type readResult struct {
	index uint64
	err   error
}

func newReadIndexer(maxPending int, retry time.Duration) *readIndexer {
	return &readIndexer{maxPending: maxPending, retry: retry, notify: make(chan struct{}, 1)}
}

// enqueue adds a caller to the next round; ErrTooManyRequests when
// maxPending callers wait already (counting the round in flight).
func (r *readIndexer) enqueue() (<-chan readResult, error) {
	ch := make(chan readResult, 1)
	r.mu.Lock()
	n := len(r.mu.waiting)
	if r.mu.inflight != nil {
		n += len(r.mu.inflight.waiters)
	}
	if n >= r.maxPending {
		r.mu.Unlock()
		return nil, ErrTooManyRequests
	}
	r.mu.waiting = append(r.mu.waiting, ch)
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return ch, nil
}

// maybeStart starts a round for the waiting callers if none is in flight.
// Raft goroutine only.
func (r *readIndexer) maybeStart(rn *raft.RawNode, now time.Time) {
	r.mu.Lock()
	if r.mu.inflight != nil || len(r.mu.waiting) == 0 {
		r.mu.Unlock()
		return
	}
	r.mu.nextID++
	round := &readRound{
		rctx:    binary.BigEndian.AppendUint64(nil, r.mu.nextID),
		waiters: r.mu.waiting,
		sentAt:  now,
	}
	r.mu.waiting = nil
	r.mu.inflight = round
	r.mu.Unlock()
	r.rounds.add(1)
	rn.ReadIndex(round.rctx)
}

// maybeRetry sends the round in flight again if it has waited longer than
// the retry interval. Raft goroutine only.
func (r *readIndexer) maybeRetry(rn *raft.RawNode, now time.Time) {
	r.resendIf(rn, now, func(round *readRound) bool { return now.Sub(round.sentAt) >= r.retry })
}

// resend sends the round in flight again now. Raft goroutine only.
func (r *readIndexer) resend(rn *raft.RawNode, now time.Time) {
	r.resendIf(rn, now, func(*readRound) bool { return true })
}

func (r *readIndexer) resendIf(rn *raft.RawNode, now time.Time, due func(*readRound) bool) {
	r.mu.Lock()
	round := r.mu.inflight
	if round == nil || !due(round) {
		r.mu.Unlock()
		return
	}
	round.sentAt = now
	r.mu.Unlock()
	r.retries.add(1)
	rn.ReadIndex(round.rctx)
}

// onReadStates completes the round in flight if raft answered it; answers
// to earlier rounds (duplicates after a retry) are ignored. Raft goroutine
// only.
func (r *readIndexer) onReadStates(states []raft.ReadState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	round := r.mu.inflight
	if round == nil {
		return
	}
	for _, rs := range states {
		if bytes.Equal(rs.RequestCtx, round.rctx) {
			deliverLocked(round.waiters, readResult{index: rs.Index})
			r.mu.inflight = nil
			return
		}
	}
}

// fail ends the round in flight with err; with all, waiting callers too.
// Raft goroutine only.
func (r *readIndexer) fail(err error, all bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if round := r.mu.inflight; round != nil {
		deliverLocked(round.waiters, readResult{err: err})
		r.mu.inflight = nil
	}
	if all {
		deliverLocked(r.mu.waiting, readResult{err: err})
		r.mu.waiting = nil
	}
}

// deliverLocked answers callers; their channels are buffered and each gets
// one answer, so this never blocks (a caller that gave up never reads it).
// REQUIRES: r.mu held.
func deliverLocked(waiters []chan readResult, res readResult) {
	for _, ch := range waiters {
		ch <- res
	}
}

// wait blocks for the caller's result.
func (n *Node) waitRead(ctx context.Context, ch <-chan readResult) (uint64, error) {
	select {
	case res := <-ch:
		return res.index, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.done:
		return 0, ErrStopped
	}
}
