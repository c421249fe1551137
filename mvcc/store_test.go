package mvcc

import (
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
