package transport

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// dropRun sends n heartbeats 1->2 with drop probability p under seed and
// returns the Commit numbers that arrived.
func dropRun(t *testing.T, seed uint64, p float64, n int) []uint64 {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 7), "", true)
	connect(a, b)
	a.tr.Faults().Seed(seed)
	a.tr.Faults().Drop(2, p)
	a.tr.Send(heartbeats(1, 2, n))
	st := a.tr.Stats()[2]
	if st.MsgsDropped != 0 {
		t.Fatalf("queue drops %d: test would not measure Drop", st.MsgsDropped)
	}
	want := n - int(st.MsgsFaultDropped)
	waitFor(t, waitTimeout, "delivery", func() bool { return len(b.raft.from(1)) >= want })
	var got []uint64
	for _, m := range b.raft.from(1) {
		got = append(got, m.Commit)
	}
	if !slices.IsSorted(got) {
		t.Fatal("survivors out of order")
	}
	return got
}

// Drop honours its probability, and the same seed drops the same messages.
func TestFaultDropSeeded(t *testing.T) {
	const (
		n = 4000
		p = 0.3
	)
	first := dropRun(t, 42, p, n)
	dropped := float64(n-len(first)) / n
	// Binomial: sd = sqrt(p(1-p)/n) = 0.0072; allow 5 sd.
	if sd := math.Sqrt(p * (1 - p) / n); math.Abs(dropped-p) > 5*sd {
		t.Fatalf("dropped %.4f of messages, want %.2f ± %.4f", dropped, p, 5*sd)
	}
	if again := dropRun(t, 42, p, n); !slices.Equal(first, again) {
		t.Fatal("same seed, different drops")
	}
	if other := dropRun(t, 43, p, n); slices.Equal(first, other) {
		t.Fatal("different seeds, same drops")
	}
	t.Logf("dropped %.4f with p=%.2f", dropped, p)
}

// Delay holds every message at least d, and never reorders them.
func TestFaultDelay(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 7), "", true)
	connect(a, b)
	a.tr.Send(heartbeats(1, 2, 1)) // the stream is up before timing
	waitFor(t, waitTimeout, "warm-up", func() bool { return len(b.raft.from(1)) == 1 })

	const d, jitter = 150 * time.Millisecond, 50 * time.Millisecond
	a.tr.Faults().Delay(2, d, jitter)
	msgs := heartbeats(1, 2, 21)[1:]
	sent := time.Now()
	for i := range msgs {
		a.tr.Send(msgs[i : i+1])
	}
	waitFor(t, waitTimeout, "delayed delivery", func() bool { return len(b.raft.from(1)) == 21 })
	b.raft.mu.Lock()
	arrivals := slices.Clone(b.raft.arrivals[1:])
	b.raft.mu.Unlock()
	if took := arrivals[0].Sub(sent); took < d {
		t.Fatalf("first delayed message arrived after %v, want >= %v", took, d)
	}
	checkInOrder(t, b.raft.from(1), 21)

	a.tr.Faults().Heal()
	before := time.Now()
	a.tr.Send(heartbeats(1, 2, 22)[21:])
	waitFor(t, waitTimeout, "healed delivery", func() bool { return len(b.raft.from(1)) == 22 })
	t.Logf("delayed: %v; healed: %v", arrivals[0].Sub(sent), time.Since(before))
}

// Blackhole cuts the stream (ActiveSince zero, ErrBlackholed, raft told
// unreachable) and delivery stops; Heal resumes it.
func TestFaultBlackhole(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 7), "", true)
	connect(a, b)
	a.tr.Send(heartbeats(1, 2, 1))
	waitFor(t, waitTimeout, "delivery", func() bool { return len(b.raft.from(1)) == 1 })

	a.tr.Faults().Blackhole(2)
	waitFor(t, waitTimeout, "stream cut", func() bool { return a.tr.ActiveSince(2).IsZero() })
	if err := a.tr.Stats()[2].LastError; !errors.Is(err, ErrBlackholed) {
		t.Fatalf("LastError %v", err)
	}
	a.tr.Send(heartbeats(1, 2, 10))
	a.tr.Send([]raftpb.Message{snapMsg(1, 2, 1, 5)})
	if got := waitSnapshotStatus(t, a.raft, 2, 1); got[0] != raft.SnapshotFailure {
		t.Fatalf("blackholed snapshot: %v", got)
	}
	time.Sleep(200 * time.Millisecond)
	if got := len(b.raft.from(1)); got != 1 {
		t.Fatalf("%d messages crossed the blackhole", got-1)
	}
	// The other direction still works.
	b.tr.Send(heartbeats(2, 1, 1))
	waitFor(t, waitTimeout, "reverse delivery", func() bool { return len(a.raft.from(2)) == 1 })

	a.tr.Faults().Heal()
	waitFor(t, waitTimeout, "stream back", func() bool { return !a.tr.ActiveSince(2).IsZero() })
	a.tr.Send(heartbeats(1, 2, 2)[1:])
	waitFor(t, waitTimeout, "delivery after Heal", func() bool { return len(b.raft.from(1)) == 2 })
}

// BlackholeFrom on the receiver cuts and refuses the peer's stream.
func TestFaultBlackholeFrom(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 7), "", true)
	connect(a, b)
	a.tr.Send(heartbeats(1, 2, 1))
	waitFor(t, waitTimeout, "delivery", func() bool { return len(b.raft.from(1)) == 1 })

	b.tr.Faults().BlackholeFrom(1)
	waitFor(t, waitTimeout, "refusal", func() bool { return errors.Is(a.tr.Stats()[2].LastError, ErrBlackholed) })
	a.tr.Send(heartbeats(1, 2, 10))
	time.Sleep(200 * time.Millisecond)
	if got := len(b.raft.from(1)); got != 1 {
		t.Fatalf("%d messages crossed the blackhole", got-1)
	}
	b.tr.Faults().Heal()
	a.tr.Send(heartbeats(1, 2, 2)[1:])
	waitFor(t, waitTimeout, "delivery after Heal", func() bool { return len(b.raft.from(1)) > 1 })
}

func TestFaultArguments(t *testing.T) {
	f := newFaults()
	for _, p := range []float64{-0.1, 1.1, math.NaN()} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Drop(%v) did not panic", p)
				}
			}()
			f.Drop(1, p)
		}()
	}
	f.Drop(1, 1)
	if drop, _ := f.outbound(1); !drop {
		t.Fatal("p=1 did not drop")
	}
	if drop, _ := f.outbound(2); drop {
		t.Fatal("dropped to an unaffected peer")
	}
	f.Drop(1, 0)
	if drop, _ := f.outbound(1); drop {
		t.Fatal("Drop(0) kept the fault")
	}
	f.Heal()
	if f.active.Load() {
		t.Fatal("Heal left faults active")
	}
}
