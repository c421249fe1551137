package bench

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// simulate runs workers against l on a virtual clock: each worker takes
// a slot as soon as it is ready, starts its request at the slot and is
// ready again serviceNs later (plus stallNs once, for worker 0, at
// stallAtNs). It returns the start times below horizonNs.
func simulate(l *Limiter, workers int, serviceNs, horizonNs, stallAtNs, stallNs int64) []int64 {
	ready := make([]int64, workers)
	var starts []int64
	stalled := false
	for {
		w := 0
		for i := range ready {
			if ready[i] < ready[w] {
				w = i
			}
		}
		if ready[w] >= horizonNs {
			return starts
		}
		slot := l.reserve(ready[w])
		if slot < horizonNs {
			starts = append(starts, slot)
		}
		ready[w] = slot + serviceNs
		if w == 0 && !stalled && slot >= stallAtNs && stallNs > 0 {
			ready[w] += stallNs
			stalled = true
		}
	}
}

func TestLimiterAccuracy(t *testing.T) {
	const sec = int64(time.Second)
	for _, c := range []struct {
		name            string
		rate            float64
		workers         int
		serviceNs       int64
		wantMin, wantMx int
	}{
		{"idle workers: exactly the rate", 1000, 10, sec / 2000, 1000, 1000},
		{"one worker keeps up", 100, 1, sec / 1000, 100, 100},
		{"saturated: the workers' capacity, no more", 1000, 10, 50 * sec / 1000, 200, 200},
		{"high rate", 200000, 100, sec / 10000, 200000, 200000},
	} {
		t.Run(c.name, func(t *testing.T) {
			starts := simulate(NewLimiter(c.rate), c.workers, c.serviceNs, sec, 0, 0)
			if n := len(starts); n < c.wantMin || n > c.wantMx {
				t.Errorf("%d requests in 1s, want [%d, %d]", n, c.wantMin, c.wantMx)
			}
		})
	}
}

// TestLimiterNoBurstAfterStall checks that slots missed while every
// worker was busy are not made up for by a burst.
func TestLimiterNoBurstAfterStall(t *testing.T) {
	const ms = int64(time.Millisecond)
	l := NewLimiter(1000)
	// One worker, 1ms apart, stalls 100ms at 200ms.
	starts := simulate(l, 1, ms/10, 1000*ms, 200*ms, 100*ms)
	for i := 1; i < len(starts); i++ {
		if gap := starts[i] - starts[i-1]; gap < ms {
			t.Fatalf("requests %d and %d %dns apart, want >= 1ms (no catch-up burst)", i-1, i, gap)
		}
	}
	if n := len(starts); n < 895 || n > 901 {
		t.Errorf("%d requests, want about 900 (1000 minus the 100ms stall)", n)
	}
}

func TestLimiterNilAndZero(t *testing.T) {
	if NewLimiter(0) != nil {
		t.Fatal("rate 0 must not limit")
	}
	var l *Limiter
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestLimiterWaitNeverExceedsRate checks the real Wait on the real clock
// against the bound that holds however loaded the machine is: slots are
// one interval apart, so n waits cannot return within less than (n-1)
// intervals. (Slowness has no bound to check.)
func TestLimiterWaitNeverExceedsRate(t *testing.T) {
	const rate = 2000
	l := NewLimiter(rate)
	start := time.Now()
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < 200*time.Millisecond {
				if err := l.Wait(context.Background()); err != nil {
					t.Error(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if max := int64(elapsed.Seconds()*rate) + 1; n.Load() > max {
		t.Errorf("%d waits returned in %v, more than the %d the rate allows", n.Load(), elapsed, max)
	}
}

func TestLimiterWaitCancelled(t *testing.T) {
	l := NewLimiter(0.5) // one slot per 2s: the second wait must block
	ctx, cancel := context.WithCancel(context.Background())
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := l.Wait(ctx); err == nil {
		t.Fatal("Wait after cancel returned nil, want the context's error")
	}
}
