package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestTruncatePolicy drives the policy with a sequence of ticks (applied
// index, applied bytes) and checks where it truncates.
func TestTruncatePolicy(t *testing.T) {
	type tick struct {
		applied, bytes uint64
		cut            uint64 // 0: no truncation due
	}
	for _, tc := range []struct {
		name                                  string
		count, catchUp, countBytes, catchUpBy uint64
		ticks                                 []tick
	}{
		{
			name: "entries only, as etcd", count: 100, catchUp: 50,
			ticks: []tick{{40, 0, 0}, {99, 0, 0}, {100, 0, 50}, {150, 0, 0}, {199, 0, 0}, {200, 0, 150}, {1000, 0, 950}},
		},
		{
			name: "no cut below the catch-up entries", count: 10, catchUp: 50,
			ticks: []tick{{20, 0, 0}, {50, 0, 0}, {60, 0, 10}},
		},
		{
			// 1 KiB entries: the byte trigger fires long before the count.
			name: "bytes trigger", count: 10000, catchUp: 5000, countBytes: 100 << 10, catchUpBy: 1 << 40,
			ticks: []tick{{50, 50 << 10, 0}, {99, 99 << 10, 0}, {100, 100 << 10, 0}, {5100, 5100 << 10, 100},
				{5150, 5150 << 10, 0}, {5200, 5200 << 10, 200}},
		},
		{
			// 35 KiB entries: keep only what fits in 1 MiB (about 29), but
			// never less than the last sample's.
			name: "catch-up bytes", count: 100, catchUp: 5000, countBytes: 0, catchUpBy: 1 << 20,
			ticks: []tick{{10, 10 * 35 << 10, 0}, {20, 20 * 35 << 10, 0}, {50, 50 * 35 << 10, 0}, {100, 100 * 35 << 10, 50},
				{130, 130 * 35 << 10, 0}, {200, 200 * 35 << 10, 130}},
		},
		{
			// One tick wrote more than the catch-up bytes: the entries of
			// the last tick stay.
			name: "at least one sample kept", count: 10, catchUp: 5000, catchUpBy: 1 << 10,
			ticks: []tick{{5, 5 << 20, 0}, {20, 20 << 20, 5}, {21, 21 << 20, 0}, {40, 40 << 20, 21}},
		},
		{
			name: "idle ticks change nothing", count: 10, catchUp: 5, countBytes: 1, catchUpBy: 1,
			ticks: []tick{{20, 20, 15}, {20, 20, 0}, {20, 20, 0}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &truncatePolicy{count: tc.count, catchUp: tc.catchUp, countBytes: tc.countBytes, catchUpByte: tc.catchUpBy}
			for i, tk := range tc.ticks {
				cut, due := p.observe(tk.applied, tk.bytes)
				if !due {
					cut = 0
				}
				if cut != tk.cut {
					t.Fatalf("tick %d (applied %d, bytes %d): cut %d, want %d", i, tk.applied, tk.bytes, cut, tk.cut)
				}
				if due {
					p.truncated(cut, tk.applied, tk.bytes)
				}
			}
		})
	}
}

func TestTruncatePolicySamplesBounded(t *testing.T) {
	p := &truncatePolicy{count: 1 << 62, catchUp: 1 << 62}
	for i := uint64(1); i <= 3*maxLogSamples; i++ {
		p.observe(i, i)
	}
	if len(p.samples) != maxLogSamples || p.samples[len(p.samples)-1].index != 3*maxLogSamples {
		t.Fatalf("%d samples, newest %d", len(p.samples), p.samples[len(p.samples)-1].index)
	}
}

func TestIdleFlush(t *testing.T) {
	var f idleFlush
	flushes := 0
	applied := uint64(0)
	step := func(ticks int, move bool) {
		for i := 0; i < ticks; i++ {
			if move {
				applied++
			}
			if f.observe(applied) {
				flushes++
			}
		}
	}
	step(100, false) // never wrote: a fresh idle member has nothing to flush... once
	if flushes != 1 {
		t.Fatalf("%d flushes while idle from the start, want 1", flushes)
	}
	step(50, true)
	step(idleTicks-1, false)
	if flushes != 1 {
		t.Fatalf("flushed before %d idle ticks", idleTicks)
	}
	step(1, false)
	step(100, false)
	if flushes != 2 {
		t.Fatalf("%d flushes after one idle period, want 2", flushes)
	}
	step(1, true)
	step(idleTicks, false)
	if flushes != 3 {
		t.Fatalf("%d flushes after a second idle period, want 3", flushes)
	}
}

// TestFlushIdleEmptiesMemtables: an idle member's flush leaves both
// engines' memtables empty (so their WALs can go) and serves on.
func TestFlushIdleEmptiesMemtables(t *testing.T) {
	s, cli := startInProcess(t, inProcessConfig(t, t.TempDir()))
	value := strings.Repeat("v", 1024)
	for i := 0; i < 200; i++ {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("k%03d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	memtables := func() (data, raft uint64) {
		a, err := s.db.Stats()
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.raftDB.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return a.MemtableBytes, b.MemtableBytes
	}
	if d, r := memtables(); d < 200<<10 || r < 200<<10 {
		t.Fatalf("memtables hold %d and %d bytes after 200 KiB of puts, want more", d, r)
	}
	s.flushIdle()
	// An empty memtable still holds its arena's first block.
	if d, r := memtables(); d > 64<<10 || r > 64<<10 {
		t.Fatalf("memtables hold %d and %d bytes after the idle flush", d, r)
	}
	if resp, err := cli.Get(context.Background(), "k199"); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get after the flush: %v, %v", resp, err)
	}
}
