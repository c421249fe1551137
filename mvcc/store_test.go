package mvcc

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metastore/metastore/engine"
)

// TestLoadRev checks where Open finds the current revision: the key of
// the last event list, or mvcc/current_rev as stores written before the
// event key took its place kept it, whichever is larger.
func TestLoadRev(t *testing.T) {
	for _, tc := range []struct {
		name    string
		puts    int
		metaRev int64 // 0: no mvcc/current_rev
		want    int64
	}{
		{name: "empty", want: 1},
		{name: "events", puts: 3, want: 4},
		{name: "legacy meta only", metaRev: 7, want: 7},
		{name: "events newer than legacy meta", puts: 3, metaRev: 2, want: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openEngine(t, t.TempDir())
			defer db.Close()
			s := openStore(t, db, testCfg())
			for i := 0; i < tc.puts; i++ {
				if _, err := s.Put(uint64(i+1), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.metaRev != 0 {
				b := db.NewBatch()
				b.Put(engine.CFMeta, metaCurrentRev, encodeU64(uint64(tc.metaRev)))
				if err := db.Write(b, false); err != nil {
					t.Fatal(err)
				}
			}
			s = openStore(t, db, testCfg())
			defer s.Close()
			if got := s.Rev(); got != tc.want {
				t.Fatalf("Rev() = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestCompactionPause(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		busy, interval time.Duration
		percent        int
		want           time.Duration
	}{
		{busy: ms, interval: 10 * ms, percent: 10, want: 10 * ms},       // short batch: the interval
		{busy: 5 * ms, interval: 10 * ms, percent: 10, want: 45 * ms},   // 5 of every 50 ms
		{busy: 5 * ms, interval: 10 * ms, percent: 50, want: 10 * ms},   // 5 of 15 ms is under half
		{busy: 20 * ms, interval: 10 * ms, percent: 50, want: 20 * ms},  // half
		{busy: 20 * ms, interval: 10 * ms, percent: 100, want: 10 * ms}, // no bound but the interval
		{busy: 0, interval: 0, percent: 10, want: 0},
	} {
		if got := compactionPause(tc.busy, tc.interval, tc.percent); got != tc.want {
			t.Errorf("compactionPause(%s, %s, %d) = %s, want %s", tc.busy, tc.interval, tc.percent, got, tc.want)
		}
	}
}

// TestPacer: a paced walk pauses only once a quantum of work has passed,
// for compactionPause of it, and a stop ends the pause with errStopped.
func TestPacer(t *testing.T) {
	var nilPacer *pacer
	if err := nilPacer.tick(); err != nil {
		t.Fatal(err)
	}
	stopc := make(chan struct{})
	p := &pacer{start: time.Now(), interval: time.Millisecond, percent: 50, stopc: stopc}
	if begin := time.Now(); p.tick() != nil || time.Since(begin) > hashPaceQuantum {
		t.Fatal("a tick before a quantum of work paused")
	}
	p.start = time.Now().Add(-2 * hashPaceQuantum) // two quanta of work at 50%: as long a pause
	begin := time.Now()
	if err := p.tick(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d < 2*hashPaceQuantum {
		t.Fatalf("paused %s after %s of work at 50%%", d, 2*hashPaceQuantum)
	}
	if time.Since(p.start) > hashPaceQuantum {
		t.Fatal("the pause did not restart the quantum")
	}
	p.percent = 1 // a pause of 99 quanta, ended by the stop
	p.start = time.Now().Add(-hashPaceQuantum)
	close(stopc)
	if err := p.tick(); err != errStopped {
		t.Fatalf("tick after stop: %v", err)
	}
}

// TestPacerIdle: the pause stretches to the busy share only when the
// store served something since the previous pause began.
func TestPacerIdle(t *testing.T) {
	var served uint64
	p := &pacer{interval: 10 * time.Millisecond, idlePause: 10 * time.Millisecond, percent: 10, activity: func() uint64 { return served }}
	busy := 5 * time.Millisecond
	for i, step := range []struct {
		serve uint64
		want  time.Duration
	}{
		{0, 10 * time.Millisecond},  // idle from the start
		{3, 45 * time.Millisecond},  // requests came: 10% busy
		{0, 10 * time.Millisecond},  // none since: idle again
		{0, 10 * time.Millisecond},  // still idle
		{1, 45 * time.Millisecond},  // one read is enough
		{70, 45 * time.Millisecond}, // still serving
	} {
		served += step.serve
		if got := p.pauseFor(busy); got != step.want {
			t.Fatalf("step %d (served %d more): pause %s, want %s", i, step.serve, got, step.want)
		}
	}
	p.idlePause = 0 // the hash's pacer: no pause while idle
	served++
	if got := p.pauseFor(busy); got != 45*time.Millisecond {
		t.Fatalf("after requests: pause %s, want 45ms", got)
	}
	if got := p.pauseFor(busy); got != 0 {
		t.Fatalf("idle, idlePause 0: pause %s, want none", got)
	}
	stopc := make(chan struct{})
	p.stopc = stopc
	if err := p.pause(busy); err != nil {
		t.Fatalf("idle pause: %v", err)
	}
	close(stopc)
	if err := p.pause(busy); err != errStopped {
		t.Fatalf("idle pause after stop: %v, want errStopped", err)
	}
	p.activity = nil // no activity count: always paced
	if got := p.pauseFor(busy); got != 45*time.Millisecond {
		t.Fatalf("without an activity count: pause %s, want 45ms", got)
	}

	// The store's count moves with reads and with applied entries.
	db := openEngine(t, t.TempDir())
	defer db.Close()
	s := openStore(t, db, testCfg())
	defer s.Close()
	a := s.activity()
	if _, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte("k")}); err != nil {
		t.Fatal(err)
	}
	if b := s.activity(); b == a {
		t.Fatal("a read did not move the activity count")
	}
	a = s.activity()
	if _, err := s.Put(s.AppliedIndex()+1, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	if b := s.activity(); b == a {
		t.Fatal("a put did not move the activity count")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" valid; else a substring of the error
	}{
		{Config{}, ""},
		{Config{CountIndexBucketKeys: -1}, ""},
		{Config{CompactionBusyPercent: 100}, ""},
		{Config{CompactionBusyPercent: 101}, "CompactionBusyPercent 101"},
		{Config{CompactionBusyPercent: -5}, "CompactionBusyPercent -5"},
		{Config{CompactionBatchLimitRevs: -1, MaxLeases: -1}, "MaxLeases -1"},
	} {
		err := tc.cfg.WithDefaults().Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.cfg, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
}

// TestCompactBatchCountsVersions: a compaction batch is bounded by the key
// versions it processes (etcd's revisions), not by main revisions, so a
// store written in large txns does not hold the writer lock for a batch of
// thousands of versions; a batch still ends on a whole revision.
func TestCompactBatchCountsVersions(t *testing.T) {
	db := openEngine(t, t.TempDir())
	defer db.Close()
	cfg := testCfg() // CompactionBatchLimitRevs 3
	s := openStore(t, db, cfg)
	defer s.Close()
	idx := s.AppliedIndex()
	txn := &pb.TxnRequest{}
	for i := 0; i < 5; i++ {
		txn.Success = append(txn.Success, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{
			RequestPut: &pb.PutRequest{Key: []byte{'t', byte('0' + i)}, Value: []byte("v")}}})
	}
	idx++
	if _, err := s.Txn(idx, txn); err != nil { // rev 2: 5 versions
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ { // revs 3..8: one version each
		idx++
		if _, err := s.Put(idx, &pb.PutRequest{Key: []byte{'p', byte('0' + i)}, Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
	}
	var tr touchedRanges
	var cursors []int64
	for done := false; !done; {
		var err error
		if done, err = s.compactBatch(8, &tr); err != nil {
			t.Fatal(err)
		}
		s.comp.mu.Lock()
		cursors = append(cursors, s.comp.mu.cursor)
		s.comp.mu.Unlock()
		if len(cursors) > 10 {
			t.Fatalf("walk did not end: cursors %v", cursors)
		}
	}
	// rev 2 alone (5 versions >= 3), then 3..5, then 6..8 (the last batch
	// leaves the cursor at the target).
	if want := []int64{3, 6, 8}; !slices.Equal(cursors, want) {
		t.Fatalf("cursor after each batch %v, want %v", cursors, want)
	}
}
