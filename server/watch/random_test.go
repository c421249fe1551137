package watch

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// watchSpec is one randomly chosen watcher of the randomized test.
type watchSpec struct {
	stream   int
	id       int64
	key, end []byte
	v        variant
	start    int64 // requested; 0 = from creation
	canceled bool  // by the test
}

// TestRandomizedHistories: random writes (txns of puts and deletes), random
// compactions, random watchers on random ranges starting at random
// revisions, random cancels and progress requests, on streams read at
// random speeds, with a small send queue, small catch-up batches and a
// subscription that overflows. Every watcher must receive exactly the
// filtered history from its start (a prefix of it, then compact_revision,
// if compaction overtook it), and every progress notification at revision
// P must come after every event at or below P for every watcher on the
// stream. Seeds are fixed; set more with -count.
func TestRandomizedHistories(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runRandomized(t, seed) })
	}
}

func runRandomized(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	src := newFakeSource(rng.IntN(4))
	src.noReplay = rng.IntN(2) == 0
	cfg := Config{
		SendQueueResponses: 2 + rng.IntN(16),
		CatchUpBatchEvents: 1 + rng.IntN(20),
		MaxRequestBytes:    512 + rng.IntN(4096),
	}
	t.Logf("seed %d subBuf %d noReplay %v cfg %+v", seed, src.subBuf, src.noReplay, cfg)
	h := newHarness(t, src, cfg)

	const numStreams, numKeys, numOps = 3, 8, 600
	var mu sync.Mutex // guards specs, collectors, readErr
	var readErr error
	specs := map[[2]int64]*watchSpec{}
	cols := make([]*collector, numStreams)
	streams := make([]*rawStream, numStreams)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for i := range streams {
		streams[i] = h.raw()
		cols[i] = newCollector()
		if rng.IntN(2) == 0 {
			streams[i].readDelay, streams[i].readDelayEvery = time.Millisecond, 1+rng.IntN(20)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for {
				resp, err := streams[i].tryNext(50 * time.Millisecond)
				if err != nil {
					select {
					case <-done:
						return
					default:
						continue
					}
				}
				mu.Lock()
				if err := cols[i].addErr(resp); err != nil && readErr == nil {
					readErr = fmt.Errorf("stream %d: %v", i, err)
				}
				if resp.WatchId == -1 && !resp.Created && readErr == nil {
					readErr = checkProgress(src, specs, cols[i], i, resp.Header.Revision)
				}
				mu.Unlock()
			}
		}(i)
	}

	key := func() []byte { return []byte(fmt.Sprint("k", rng.IntN(numKeys))) }
	nextID := int64(1)
	newWatch := func() {
		sp := &watchSpec{stream: rng.IntN(numStreams), id: nextID}
		nextID++
		switch rng.IntN(5) {
		case 0:
			sp.key = key()
		case 1:
			sp.key, sp.end = []byte("k"), []byte("l")
		case 2:
			sp.key, sp.end = []byte("k2"), []byte("k5")
		case 3:
			sp.key, sp.end = []byte("k4"), []byte{0}
		case 4:
			sp.key, sp.end = []byte{0}, []byte{0}
		}
		sp.v = variant(rng.IntN(numVariants))
		if sp.v&(varNoPut|varNoDelete) == varNoPut|varNoDelete {
			sp.v &^= varNoDelete
		}
		rev := src.Rev()
		if rng.IntN(3) > 0 {
			sp.start = max(1, rev-int64(rng.IntN(200))+2)
		}
		creq := &pb.WatchCreateRequest{Key: sp.key, RangeEnd: sp.end, StartRevision: sp.start, WatchId: sp.id, PrevKv: sp.v&varPrevKV != 0}
		if sp.v&varNoPut != 0 {
			creq.Filters = append(creq.Filters, pb.WatchCreateRequest_NOPUT)
		}
		if sp.v&varNoDelete != 0 {
			creq.Filters = append(creq.Filters, pb.WatchCreateRequest_NODELETE)
		}
		mu.Lock()
		specs[[2]int64{int64(sp.stream), sp.id}] = sp
		mu.Unlock()
		streams[sp.stream].create(creq)
	}

	for op := 0; op < numOps; op++ {
		switch n := rng.IntN(100); {
		case n < 8:
			newWatch()
		case n < 10:
			var victim *watchSpec
			mu.Lock()
			for _, sp := range specs {
				if !sp.canceled && rng.IntN(4) == 0 {
					sp.canceled = true
					victim = sp
					break
				}
			}
			mu.Unlock()
			if victim != nil { // not under mu: Send may wait for the reader
				streams[victim.stream].cancelWatch(victim.id)
			}
		case n < 12:
			streams[rng.IntN(numStreams)].requestProgress()
		case n < 13:
			src.compact(src.Rev() - 50 - int64(rng.IntN(150)))
		default:
			var ops []fakeOp
			for j := 0; j <= rng.IntN(3); j++ {
				if rng.IntN(3) == 0 {
					ops = append(ops, del(string(key())))
				} else {
					ops = append(ops, put(string(key()), fmt.Sprint(op, "-", j)))
				}
			}
			src.txn(ops...)
		}
		if rng.IntN(50) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	final := src.Rev()

	// Wait for every watcher to be complete, then compare exactly.
	complete := func(sp *watchSpec) (bool, error) {
		c := cols[sp.stream]
		cr := c.created[sp.id]
		if cr == nil {
			return false, nil
		}
		start := sp.start
		if start == 0 {
			start = cr.Header.Revision + 1
		}
		want := src.expected(sp.key, sp.end, start, final, sp.v)
		got := c.events[sp.id]
		if len(got) > len(want) {
			return true, fmt.Errorf("watch %v: %d events, want %d", sp, len(got), len(want))
		}
		if err := sameEvents(got, want[:len(got)]); err != nil {
			return true, fmt.Errorf("watch %+v: %v", sp, err)
		}
		if sp.canceled {
			return true, nil // canceled by the test: a correct prefix is all it owes
		}
		if cc := c.canceled[sp.id]; cc != nil && cc.CompactRevision != 0 {
			// It stood at some next with start <= next <= compacted
			// when canceled, past every event it got.
			if start >= cc.CompactRevision || cc.CompactRevision > src.CompactedRev()+1 ||
				(len(got) > 0 && got[len(got)-1].Kv.ModRevision >= cc.CompactRevision) {
				return true, fmt.Errorf("watch %+v: bad compaction cancel at %d (compacted %d)", sp, cc.CompactRevision, src.CompactedRev())
			}
			return true, nil
		}
		return len(got) == len(want), nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		pending := 0
		firstErr := readErr
		for _, sp := range specs {
			ok, err := complete(sp)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if !ok {
				pending++
			}
		}
		mu.Unlock()
		if firstErr != nil {
			close(done)
			wg.Wait()
			t.Fatal(firstErr)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			close(done)
			wg.Wait()
			t.Fatalf("%d of %d watchers incomplete; stats %+v", pending, len(specs), h.srv.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(done)
	wg.Wait()
	progress, compacted, events := 0, 0, 0
	for _, c := range cols {
		progress += len(c.progress)
		for _, cc := range c.canceled {
			if cc.CompactRevision != 0 {
				compacted++
			}
		}
		for _, evs := range c.events {
			events += len(evs)
		}
	}
	t.Logf("%d revisions, %d watchers (%d canceled by compaction), %d events, %d progress notifications",
		final, len(specs), compacted, events, progress)
}

// checkProgress: at a progress notification of revision p on stream i,
// every live watcher created on it has all its events at or below p.
func checkProgress(src *fakeSource, specs map[[2]int64]*watchSpec, c *collector, i int, p int64) error {
	for k, sp := range specs {
		if k[0] != int64(i) || c.created[sp.id] == nil || c.canceled[sp.id] != nil {
			continue
		}
		start := sp.start
		if start == 0 {
			start = c.created[sp.id].Header.Revision + 1
		}
		want := src.expected(sp.key, sp.end, start, p, sp.v)
		if got := c.events[sp.id]; len(got) < len(want) {
			return fmt.Errorf("progress at %d on stream %d before watch %+v had its events: %d of %d", p, i, sp, len(got), len(want))
		}
	}
	return nil
}
