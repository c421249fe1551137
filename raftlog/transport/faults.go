package transport

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// defaultFaultSeed seeds the fault generator until Seed is called, so a run
// without Seed is reproducible too.
const defaultFaultSeed = 1

// Faults injects network faults at a Transport's edges, for tests and for a
// test-only hook. All methods are safe for concurrent use; every fault stays
// until Heal.
//
// Faults act where a real network would:
//
//   - Drop and Delay apply to outbound messages as Send accepts them, in Send
//     order, drawing from one seeded generator: the same seed and the same
//     sequence of Send calls drop the same messages. A delayed message also
//     holds back the messages behind it, as TCP would; messages are never
//     reordered. A dropped or blackholed MsgSnap is reported to raft as
//     SnapshotFailure (raft would otherwise wait for it forever).
//   - Blackhole(to) cuts this member's outbound stream and snapshots to `to`
//     and refuses to redial it, so ActiveSince(to) turns zero and raft hears
//     ReportUnreachable. Configure both sides for a two-way partition, or use
//     BlackholeFrom, which refuses and cuts inbound streams from a peer.
//   - CorruptSnapshots(to) flips a byte of the first chunk of each snapshot
//     sent to `to`, after its checksum was taken: the receiver must reject it.
type Faults struct {
	// active is false while no fault is configured: the hot paths then skip
	// the mutex.
	active atomic.Bool
	mu     struct {
		sync.Mutex
		rng           *rand.Rand
		drop          map[uint64]float64 // to -> probability in [0, 1]
		delay         map[uint64]delaySpec
		blackholeTo   map[uint64]bool
		blackholeFrom map[uint64]bool
		corruptTo     map[uint64]bool
	}
}

type delaySpec struct{ d, jitter time.Duration }

func newFaults() *Faults {
	f := &Faults{}
	f.mu.rng = rand.New(rand.NewPCG(defaultFaultSeed, defaultFaultSeed))
	f.resetLocked()
	return f
}

// resetLocked clears every fault.
// REQUIRES: f.mu held, or f not yet shared.
func (f *Faults) resetLocked() {
	f.mu.drop = map[uint64]float64{}
	f.mu.delay = map[uint64]delaySpec{}
	f.mu.blackholeTo = map[uint64]bool{}
	f.mu.blackholeFrom = map[uint64]bool{}
	f.mu.corruptTo = map[uint64]bool{}
	f.active.Store(false)
}

// Seed restarts the generator behind Drop and Delay's jitter from n.
func (f *Faults) Seed(n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.rng = rand.New(rand.NewPCG(n, n))
}

// Drop drops each outbound message to `to` with the given probability, in
// [0, 1]; 0 removes the fault.
func (f *Faults) Drop(to uint64, probability float64) {
	if !(probability >= 0 && probability <= 1) {
		panic(fmt.Sprintf("transport: Faults.Drop probability %v outside [0, 1]", probability))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if probability == 0 {
		delete(f.mu.drop, to)
	} else {
		f.mu.drop[to] = probability
	}
	f.active.Store(true)
}

// Delay holds each outbound message to `to` for d plus a uniform random
// part of [0, jitter) before it is written.
func (f *Faults) Delay(to uint64, d, jitter time.Duration) {
	if d < 0 || jitter < 0 {
		panic(fmt.Sprintf("transport: Faults.Delay(%v, %v) negative", d, jitter))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.delay[to] = delaySpec{d: d, jitter: jitter}
	f.active.Store(true)
}

// Blackhole cuts everything this member sends to `to`.
func (f *Faults) Blackhole(to uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.blackholeTo[to] = true
	f.active.Store(true)
}

// BlackholeFrom refuses and cuts every stream and snapshot from `from`.
func (f *Faults) BlackholeFrom(from uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.blackholeFrom[from] = true
	f.active.Store(true)
}

// CorruptSnapshots corrupts every snapshot sent to `to` in flight.
func (f *Faults) CorruptSnapshots(to uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.corruptTo[to] = true
	f.active.Store(true)
}

// Heal removes every fault. The seed's generator keeps its position.
func (f *Faults) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resetLocked()
}

// outbound decides the fate of one outbound message to `to`: dropped, or
// delayed by the returned duration (0 for none).
func (f *Faults) outbound(to uint64) (drop bool, delay time.Duration) {
	if !f.active.Load() {
		return false, 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.blackholeTo[to] {
		return true, 0
	}
	if p, ok := f.mu.drop[to]; ok && f.mu.rng.Float64() < p {
		return true, 0
	}
	if s, ok := f.mu.delay[to]; ok {
		delay = s.d
		if s.jitter > 0 {
			delay += time.Duration(f.mu.rng.Int64N(int64(s.jitter)))
		}
	}
	return false, delay
}

// blackholedTo reports whether streams to `to` are cut.
func (f *Faults) blackholedTo(to uint64) bool {
	if !f.active.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.blackholeTo[to]
}

// blackholedFrom reports whether streams from `from` are cut.
func (f *Faults) blackholedFrom(from uint64) bool {
	if !f.active.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.blackholeFrom[from]
}

// corruptSnapshot reports whether snapshots to `to` are to be corrupted.
func (f *Faults) corruptSnapshot(to uint64) bool {
	if !f.active.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.corruptTo[to]
}
