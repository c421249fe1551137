package raftlog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// Benchmarks of the node over a real engine (fsync on) and the in-memory
// transport. Run with:
//
//	go test -bench . -run XXX ./raftlog
//
// Each prints proposals/s, fsyncs/s of the leader's raft log and their
// ratio (proposals per fsync: the group commit), beside Go's ns/op.

// applyWaiters lets each benchmark client wait for its own key to apply,
// as the server's wait registry will (etcd's wait.Wait).
type applyWaiters struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

func (w *applyWaiters) register(key string) chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	w.m[key] = ch
	w.mu.Unlock()
	return ch
}

func (w *applyWaiters) trigger(key string) {
	w.mu.Lock()
	ch, ok := w.m[key]
	delete(w.m, key)
	w.mu.Unlock()
	if ok {
		close(ch)
	}
}

// runProposals has clients concurrent clients propose b.N values of
// valueBytes through the leader, each waiting for its value to apply on
// the leader before proposing the next, and reports throughput and fsyncs.
func runProposals(b *testing.B, c *cluster, clients, valueBytes int) {
	l := c.waitLeader()
	w := &applyWaiters{m: map[string]chan struct{}{}}
	trigger := w.trigger
	l.app.onApplied.Store(&trigger)
	value := strings.Repeat("v", valueBytes)
	var next atomic.Int64
	var maxCacheBytes atomic.Int64
	syncsBefore := l.st.SyncedWrites()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				key := fmt.Sprintf("k%d", i)
				for {
					ch := w.register(key)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err := l.node.Propose(ctx, []byte(key+"="+value))
					if err == nil {
						select {
						case <-ch:
						case <-ctx.Done():
							err = ctx.Err()
						}
					}
					cancel()
					if cb := l.st.CacheBytes(); cb > maxCacheBytes.Load() {
						maxCacheBytes.Store(cb)
					}
					if err == nil {
						break
					}
					if !errors.Is(err, ErrTooManyRequests) {
						b.Errorf("propose: %v", err)
						return
					}
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	b.StopTimer()
	syncs := float64(l.st.SyncedWrites() - syncsBefore)
	b.ReportMetric(float64(b.N)/elapsed, "proposals/s")
	b.ReportMetric(syncs/elapsed, "fsyncs/s")
	if syncs > 0 {
		b.ReportMetric(float64(b.N)/syncs, "proposals/fsync")
	}
	b.ReportMetric(float64(maxCacheBytes.Load()), "max-cache-bytes")
}

func BenchmarkPropose(b *testing.B) {
	for _, members := range []int{1, 3} {
		for _, clients := range []int{1, 64, 512} {
			b.Run(fmt.Sprintf("members=%d/clients=%d/value=256B", members, clients), func(b *testing.B) {
				c := newCluster(b, members, Config{TickInterval: 10 * time.Millisecond, PreVote: true, CheckQuorum: true})
				runProposals(b, c, clients, 256)
			})
		}
	}
}

// BenchmarkEntryCache100KB sustains 100 KB values through a 3-member
// cluster and reports the bytes the leader's entry cache holds: bounded by
// the 64 MiB default however long the run, where a count-bounded cache of
// etcd's 10,000 entries would hold about 1 GB.
func BenchmarkEntryCache100KB(b *testing.B) {
	c := newCluster(b, 3, Config{TickInterval: 10 * time.Millisecond, PreVote: true, CheckQuorum: true})
	runProposals(b, c, 16, 100<<10)
	l := c.waitLeader()
	b.ReportMetric(float64(l.st.CacheBytes()), "cache-bytes")
	b.ReportMetric(float64(l.st.CacheEntries()), "cache-entries")
}

// BenchmarkStorageSaveSync is the raw cost of one synced Save of one 256 B
// entry: the fsync latency the group commit amortizes.
func BenchmarkStorageSaveSync(b *testing.B) {
	db := openTestEngine(b, b.TempDir())
	defer db.Close()
	s, err := Open(db, StorageConfig{})
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 256)
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		e := pb.Entry{Index: uint64(i), Term: 1, Data: data}
		if err := s.Save(pb.HardState{Term: 1, Commit: uint64(i)}, []pb.Entry{e}, pb.Snapshot{}); err != nil {
			b.Fatal(err)
		}
	}
}
