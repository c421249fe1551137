package bench

import (
	"runtime"
	"sort"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Recorder collects latencies and errors. Goroutines share recorders
// (worker i uses shard i mod the shard count) so that memory does not grow
// with --clients: each recorder holds about 224 KiB per histogram, one for
// the main histogram plus one per class used. Record feeds the main
// histogram and the throughput timeline through the collector, which
// drains each recorder once per interval; RecordClass feeds a per-class
// histogram, merged when the run ends. Safe for concurrent use.
type Recorder struct {
	mu struct {
		sync.Mutex
		interval  *hdrhistogram.Histogram   // main, since the collector's last drain
		classes   []*hdrhistogram.Histogram // allocated on first use
		errors    int64                     // since the last drain
		errorMsgs map[string]int64          // at most maxErrorMsgs keys
	}
}

// maxErrorMsgs bounds the distinct error messages kept per recorder and
// per run; the rest are counted only.
const maxErrorMsgs = 8

// recorderShardsPerProc sets the number of recorders: this many per
// GOMAXPROCS, so that the goroutines running at one time rarely share one.
const recorderShardsPerProc = 4

func newRecorder(classes int) *Recorder {
	r := &Recorder{}
	r.mu.interval = newHistogram()
	r.mu.classes = make([]*hdrhistogram.Histogram, classes)
	r.mu.errorMsgs = make(map[string]int64)
	return r
}

// Record records one latency of the main histogram.
func (r *Recorder) Record(ns int64) { r.recordBoth(true, -1, ns) }

// RecordClass records one latency of class c only.
func (r *Recorder) RecordClass(c int, ns int64) { r.recordBoth(false, c, ns) }

// recordBoth records ns in the main histogram (if main) and in class c
// (if c >= 0) under one lock.
func (r *Recorder) recordBoth(main bool, c int, ns int64) {
	r.mu.Lock()
	if main {
		recordNs(r.mu.interval, ns)
	}
	if c >= 0 {
		h := r.mu.classes[c]
		if h == nil {
			h = newHistogram()
			r.mu.classes[c] = h
		}
		recordNs(h, ns)
	}
	r.mu.Unlock()
}

// Error counts one failed operation.
func (r *Recorder) Error(err error) {
	r.mu.Lock()
	r.mu.errors++
	msg := err.Error()
	if _, ok := r.mu.errorMsgs[msg]; ok || len(r.mu.errorMsgs) < maxErrorMsgs {
		r.mu.errorMsgs[msg]++
	}
	r.mu.Unlock()
}

// Point is the run's main histogram over one interval of the timeline.
type Point struct {
	// EndSec is the end of the interval, seconds since the clock started.
	EndSec float64 `json:"end_s"`
	// DurSec is the interval's width; the last one is usually shorter.
	DurSec    float64 `json:"dur_s"`
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_s"`
	Latency   Summary `json:"latency"`
}

// collector owns the recorders and drains them into the timeline and the
// run's total. Only the run's main goroutine calls flush.
type collector struct {
	recs      []*Recorder
	start     time.Time
	last      time.Time
	scratch   *hdrhistogram.Histogram
	total     *hdrhistogram.Histogram
	timeline  []Point
	errors    int64
	errorMsgs map[string]int64
}

// newCollector makes shards recorders, or a default number if shards is 0.
func newCollector(shards, classes int) *collector {
	if shards <= 0 {
		shards = recorderShardsPerProc * runtime.GOMAXPROCS(0)
	}
	c := &collector{scratch: newHistogram(), total: newHistogram(), errorMsgs: make(map[string]int64)}
	for range shards {
		c.recs = append(c.recs, newRecorder(classes))
	}
	return c
}

// recorder returns the recorder of goroutine i.
func (c *collector) recorder(i int) *Recorder { return c.recs[i%len(c.recs)] }

func (c *collector) startClock(now time.Time) {
	c.start, c.last = now, now
}

// flush drains every recorder into a new timeline point ending at now.
func (c *collector) flush(now time.Time) Point {
	c.scratch.Reset()
	var errs int64
	for _, r := range c.recs {
		r.mu.Lock()
		c.scratch.Merge(r.mu.interval)
		r.mu.interval.Reset()
		errs += r.mu.errors
		r.mu.errors = 0
		for msg, n := range r.mu.errorMsgs {
			if _, ok := c.errorMsgs[msg]; ok || len(c.errorMsgs) < maxErrorMsgs {
				c.errorMsgs[msg] += n
			}
			delete(r.mu.errorMsgs, msg)
		}
		r.mu.Unlock()
	}
	c.total.Merge(c.scratch)
	c.errors += errs
	dur := now.Sub(c.last).Seconds()
	c.last = now
	p := Point{
		EndSec:  now.Sub(c.start).Seconds(),
		DurSec:  dur,
		Ops:     c.scratch.TotalCount(),
		Errors:  errs,
		Latency: summarize(c.scratch),
	}
	if dur > 0 {
		p.OpsPerSec = float64(p.Ops) / dur
	}
	c.timeline = append(c.timeline, p)
	return p
}

// classSummaries merges every recorder's class histograms.
func (c *collector) classSummaries(names []string) map[string]Summary {
	if len(names) == 0 {
		return nil
	}
	out := make(map[string]Summary, len(names))
	for i, name := range names {
		h := newHistogram()
		for _, r := range c.recs {
			r.mu.Lock()
			if ch := r.mu.classes[i]; ch != nil {
				h.Merge(ch)
			}
			r.mu.Unlock()
		}
		out[name] = summarize(h)
	}
	return out
}

// sortedErrorMsgs lists error messages by count, most frequent first.
func sortedErrorMsgs(m map[string]int64) []ErrorCount {
	out := make([]ErrorCount, 0, len(m))
	for msg, n := range m {
		out = append(out, ErrorCount{Msg: msg, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Msg < out[j].Msg
	})
	return out
}
