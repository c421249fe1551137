package raftlog

import (
	"container/heap"
	"sync"
	"sync/atomic"
)

// applyWait tells waiters when the applied index reaches theirs: one
// channel per distinct awaited index, closed when applied passes it, found
// through a min-heap so that each advance touches only the waiters it
// releases. It replaces polling AppliedIndex.
type applyWait struct {
	// appliedIdx mirrors mu.applied for lock-free reads.
	appliedIdx atomic.Uint64
	mu         struct {
		sync.Mutex
		applied uint64
		byIndex map[uint64]chan struct{}
		order   indexHeap
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func newApplyWait(applied uint64) *applyWait {
	w := &applyWait{}
	w.mu.applied = applied
	w.appliedIdx.Store(applied)
	w.mu.byIndex = make(map[uint64]chan struct{})
	return w
}

// applied returns the last index passed to trigger.
func (w *applyWait) applied() uint64 { return w.appliedIdx.Load() }

// wait returns a channel closed once the applied index is >= index.
func (w *applyWait) wait(index uint64) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if index <= w.mu.applied {
		return closedChan
	}
	ch, ok := w.mu.byIndex[index]
	if !ok {
		ch = make(chan struct{})
		w.mu.byIndex[index] = ch
		heap.Push(&w.mu.order, index)
	}
	return ch
}

// trigger records that everything up to applied is applied.
func (w *applyWait) trigger(applied uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if applied <= w.mu.applied {
		return
	}
	w.mu.applied = applied
	w.appliedIdx.Store(applied)
	for len(w.mu.order) > 0 && w.mu.order[0] <= applied {
		idx := heap.Pop(&w.mu.order).(uint64)
		close(w.mu.byIndex[idx])
		delete(w.mu.byIndex, idx)
	}
}

type indexHeap []uint64

func (h indexHeap) Len() int           { return len(h) }
func (h indexHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h indexHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *indexHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *indexHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
