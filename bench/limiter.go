package bench

import (
	"context"
	"sync/atomic"
	"time"
)

// Limiter paces the requests of all workers to a rate. It hands out start
// times one interval apart; a worker that finds the next slot in the past
// (nobody was waiting: the workers are saturated) starts now, so a stall
// never turns into a burst that catches up. One compare-and-swap per
// request; a nil *Limiter does not limit.
//
// At rate 1000/s the slots are 1ms apart: workers arriving at 0, 0 and
// 0.2ms get slots 0, 1ms and 2ms; a worker arriving at 10ms, after a stall,
// gets 10ms and the next one 11ms.
type Limiter struct {
	intervalNs int64
	base       time.Time
	nextNs     atomic.Int64 // the next free slot, ns since base
}

// sleepWithoutTimerMax is the longest wait done with time.Sleep, which
// does not allocate but cannot be interrupted; longer waits use a timer and
// return early when ctx is done.
const sleepWithoutTimerMax = 50 * time.Millisecond

// NewLimiter returns a limiter of perSecond requests per second, or nil
// (no limit) if perSecond is 0.
func NewLimiter(perSecond float64) *Limiter {
	if perSecond <= 0 {
		return nil
	}
	return &Limiter{intervalNs: max(1, int64(float64(time.Second)/perSecond)), base: time.Now()}
}

// reserve takes the next slot for a request ready at nowNs (ns since the
// limiter's base) and returns the slot's time.
func (l *Limiter) reserve(nowNs int64) int64 {
	for {
		next := l.nextNs.Load()
		slot := max(next, nowNs)
		if l.nextNs.CompareAndSwap(next, slot+l.intervalNs) {
			return slot
		}
	}
}

// Wait blocks until the caller's slot, or ctx is done.
func (l *Limiter) Wait(ctx context.Context) error {
	if l == nil {
		return nil
	}
	now := int64(time.Since(l.base))
	d := time.Duration(l.reserve(now) - now)
	if d <= 0 {
		return ctx.Err()
	}
	if d < sleepWithoutTimerMax {
		time.Sleep(d) // no allocation
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
