package server

import (
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
// by request ID. The channel has room for one result, so Trigger never
// blocks the apply loop.
type waitRegistry struct {
	shards [waitShards]struct {
		sync.Mutex
		m map[uint64]chan result
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
	s.m[id] = ch
	s.Unlock()
}

// Trigger delivers r to id's waiter, if it is still waiting.
func (w *waitRegistry) Trigger(id uint64, r result) {
	s := &w.shards[id%waitShards]
	s.Lock()
	ch := s.m[id]
	delete(s.m, id)
	s.Unlock()
	if ch != nil {
		ch <- r
	}
}

// Cancel forgets id (its caller gave up).
func (w *waitRegistry) Cancel(id uint64) {
	s := &w.shards[id%waitShards]
	s.Lock()
	delete(s.m, id)
	s.Unlock()
}

// waiter is what one proposal waits on (Server.propose): its result
// (registered in the waitRegistry), raft's refusal (raftlog's
// ProposeAsync) and its deadline. Waiters are reused, but only once the
// result was taken: then neither the apply goroutine (which sent it, once)
// nor raft (which took the entry, so refuses nothing) holds them any more.
// A waiter given up on (refused, timed out, canceled) is left to the GC,
// as a late send may still reach it.
type waiter struct {
	res     chan result // cap 1: Trigger never blocks
	refused chan error  // cap 1: raft's refusal
	timer   *time.Timer
}

var waiterPool = sync.Pool{New: func() any {
	return &waiter{res: make(chan result, 1), refused: make(chan error, 1)}
}}

func getWaiter() *waiter { return waiterPool.Get().(*waiter) }

// putWaiter returns w to the pool. REQUIRES: nothing is or will be sent on
// w's channels, and both are empty.
func putWaiter(w *waiter) {
	if w.timer != nil {
		w.timer.Stop() // after Stop no stale tick is received (Go 1.23 timers)
	}
	waiterPool.Put(w)
}

// startTimer starts w's deadline d from now and returns its channel.
func (w *waiter) startTimer(d time.Duration) <-chan time.Time {
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	return w.timer.C
}
