package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// idGenerator makes unique request IDs as etcd's idutil does: the low 16
// bits of the member ID, then a 40-bit millisecond timestamp taken at start,
// then an 8-bit counter that carries into the timestamp. IDs from one member
// never repeat across restarts unless the clock goes back.
type idGenerator struct {
	prefix uint64
	suffix atomic.Uint64
}

const (
	idTSBits    = 40
	idCountBits = 8
	idSuffixLen = idTSBits + idCountBits
)

func newIDGenerator(memberID uint64, now time.Time) *idGenerator {
	g := &idGenerator{prefix: (memberID & 0xffff) << idSuffixLen}
	ms := uint64(now.UnixNano()/int64(time.Millisecond)) & (1<<idTSBits - 1)
	g.suffix.Store(ms << idCountBits)
	return g
}

func (g *idGenerator) next() uint64 {
	s := g.suffix.Add(1) & (1<<idSuffixLen - 1)
	return g.prefix | s
}

// result is what applying one request produced.
type result struct {
	resp any
	err  error
}

// waitShards spreads the waiting requests over independently locked maps so
// concurrent proposers do not contend on one lock.
const waitShards = 64

// waitRegistry hands apply results to the requests waiting for them, keyed
// by request ID. The channel has room for one result, and whoever removes
// an ID (Trigger, Cancel) is the only one who may send on its channel, so
// Trigger never blocks the apply loop and a waiter gets one result at most.
type waitRegistry struct {
	shards [waitShards]struct {
		sync.Mutex
		m       map[uint64]chan result
		stopped error // set by stop: later registrations get it at once
	}
}

func newWaitRegistry() *waitRegistry {
	w := &waitRegistry{}
	for i := range w.shards {
		w.shards[i].m = map[uint64]chan result{}
	}
	return w
}

// Register returns the channel on which id's result will arrive.
func (w *waitRegistry) Register(id uint64) <-chan result {
	ch := make(chan result, 1)
	w.register(id, ch)
	return ch
}

// register has id's result sent on ch, which must have room for it.
func (w *waitRegistry) register(id uint64, ch chan result) {
	s := &w.shards[id%waitShards]
	s.Lock()
	if err := s.stopped; err != nil {
		s.Unlock()
		ch <- result{err: err}
		return
	}
	s.m[id] = ch
	s.Unlock()
}

// Trigger delivers r to id's waiter, if it is still waiting.
func (w *waitRegistry) Trigger(id uint64, r result) {
	if ch := w.take(id); ch != nil {
		ch <- r
	}
}

// Cancel forgets id (its caller gave up). It reports whether id was still
// waiting: if not, a result was or is being sent on its channel.
func (w *waitRegistry) Cancel(id uint64) bool {
	return w.take(id) != nil
}

// take removes id, returning its channel (nil if it was not waiting).
func (w *waitRegistry) take(id uint64) chan result {
	s := &w.shards[id%waitShards]
	s.Lock()
	ch := s.m[id]
	delete(s.m, id)
	s.Unlock()
	return ch
}

// stop answers every waiting request, and every later one at once, with
// err (the member is stopping).
func (w *waitRegistry) stop(err error) {
	var chs []chan result
	for i := range w.shards {
		s := &w.shards[i]
		s.Lock()
		s.stopped = err
		for id, ch := range s.m {
			chs = append(chs, ch)
			delete(s.m, id)
		}
		s.Unlock()
	}
	for _, ch := range chs {
		ch <- result{err: err}
	}
}

// waiter is what one proposal waits on (Server.propose): a channel that
// gets, once, whichever comes first of its apply result (Trigger), raft's
// refusal of its entry (refuse, on the raft goroutine), its deadline
// (timer) and the member's stop, each through the waitRegistry, so that
// only one of them sends. Waiters are reused, but only once that result
// was taken with the timer stopped before it fired: then nothing holds
// them any more (an applied entry was taken by raft, which so refuses
// nothing). A waiter given up on is left to the GC.
type waiter struct {
	s      *Server
	id     uint64 // set before each use, read by refuse and the timer
	res    chan result
	refuse func(error)
	timer  *time.Timer // runs onTimeout; stopped while idle
}

// getWaiter returns an idle waiter for request id, registered.
func (s *Server) getWaiter(id uint64) *waiter {
	w, _ := s.waiters.Get().(*waiter)
	if w == nil {
		w = &waiter{s: s, res: make(chan result, 1)}
		w.refuse = w.onRefused
		w.timer = time.AfterFunc(time.Hour, w.onTimeout)
		w.timer.Stop()
	}
	w.id = id
	s.waits.register(id, w.res)
	return w
}

// putWaiter returns w, whose result was taken, to the pool unless its
// timer fired (its callback may still read w.id).
func (s *Server) putWaiter(w *waiter) {
	if w.timer.Stop() {
		s.waiters.Put(w)
	}
}

// onRefused is raftlog's ProposeAsync callback: raft refused the entry.
func (w *waiter) onRefused(err error) { w.s.waits.Trigger(w.id, result{err: err}) }

// onTimeout ends the wait at its deadline, with the error of a context
// whose deadline passed.
func (w *waiter) onTimeout() {
	w.s.waits.Trigger(w.id, result{err: context.DeadlineExceeded})
}
