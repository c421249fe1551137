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
	s := &w.shards[id%waitShards]
	ch := make(chan result, 1)
	s.Lock()
	s.m[id] = ch
	s.Unlock()
	return ch
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
