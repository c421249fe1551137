package bench

import (
	"errors"
	"math"
	"testing"
	"time"
)

// within reports whether got is within rel (relative) of want.
func within(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want)
}

func TestSummarizeUniform(t *testing.T) {
	h := newHistogram()
	for us := int64(1); us <= 10000; us++ {
		recordNs(h, us*1000)
	}
	s := summarize(h)
	// 3 significant digits: every value within 1/1024 of the truth.
	const rel = 1.0 / 1024
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"mean", s.MeanNs, 5000.5e3},
		{"min", float64(s.MinNs), 1e3},
		{"p50", float64(s.P50Ns), 5000e3},
		{"p90", float64(s.P90Ns), 9000e3},
		{"p99", float64(s.P99Ns), 9900e3},
		{"p99.9", float64(s.P999Ns), 9990e3},
		{"max", float64(s.MaxNs), 10000e3},
	} {
		if !within(c.got, c.want, rel) {
			t.Errorf("%s = %.0f, want %.0f ± %.2f%%", c.name, c.got, c.want, rel*100)
		}
	}
	if s.Count != 10000 {
		t.Errorf("count = %d, want 10000", s.Count)
	}
}

func TestSummarizeEdges(t *testing.T) {
	if s := summarize(newHistogram()); s != (Summary{}) {
		t.Errorf("empty: %+v, want zero", s)
	}
	h := newHistogram()
	recordNs(h, -5)                          // a clock step backwards: counted as 0
	recordNs(h, 10*histHighestNs)            // a stall beyond the range: clamped
	recordNs(h, int64(250*time.Millisecond)) // in range
	s := summarize(h)
	if s.Count != 3 || s.MinNs != 0 {
		t.Errorf("count %d min %d, want 3 and 0", s.Count, s.MinNs)
	}
	if !within(float64(s.MaxNs), float64(histHighestNs), 1.0/1024) {
		t.Errorf("max = %d, want about %d", s.MaxNs, histHighestNs)
	}
}

// TestCollector checks that per-recorder histograms merge into timeline
// points and a total that account for every record, and that classes
// merge across recorders.
func TestCollector(t *testing.T) {
	c := newCollector(3, 2)
	recs := c.recs
	start := time.Unix(1000, 0)
	c.startClock(start)
	for i, r := range recs {
		for range 100 * (i + 1) { // 100, 200, 300 records of 1ms
			r.Record(int64(time.Millisecond))
		}
		r.RecordClass(1, int64(2*time.Millisecond))
	}
	recs[0].Error(errors.New("boom"))
	p1 := c.flush(start.Add(time.Second))
	if p1.Ops != 600 || p1.Errors != 1 || p1.OpsPerSec != 600 || p1.EndSec != 1 || p1.DurSec != 1 {
		t.Errorf("first point %+v, want 600 ops, 1 error, 600 ops/s over [0, 1s]", p1)
	}
	recs[2].Record(int64(100 * time.Millisecond))
	p2 := c.flush(start.Add(1500 * time.Millisecond))
	if p2.Ops != 1 || p2.OpsPerSec != 2 || p2.DurSec != 0.5 {
		t.Errorf("second point %+v, want 1 op, 2 ops/s over 0.5s", p2)
	}
	if !within(float64(p2.Latency.MaxNs), 100e6, 1.0/1024) {
		t.Errorf("second point max %d, want 100ms: intervals must not leak into each other", p2.Latency.MaxNs)
	}
	if got := c.total.TotalCount(); got != 601 {
		t.Errorf("total count %d, want 601", got)
	}
	cls := c.classSummaries([]string{"a", "b"})
	if cls["a"].Count != 0 || cls["b"].Count != 3 {
		t.Errorf("classes %+v, want a empty and b 3", cls)
	}
	if got := sortedErrorMsgs(c.errorMsgs); len(got) != 1 || got[0] != (ErrorCount{"boom", 1}) {
		t.Errorf("error messages %v, want [boom x1]", got)
	}
}

func TestRecorderErrorMessagesBounded(t *testing.T) {
	r := newRecorder(0)
	for i := range 3 * maxErrorMsgs {
		r.Error(errors.New(string(rune('a' + i))))
	}
	if n := len(r.mu.errorMsgs); n != maxErrorMsgs {
		t.Errorf("%d messages kept, want %d", n, maxErrorMsgs)
	}
	if r.mu.errors != 3*maxErrorMsgs {
		t.Errorf("%d errors counted, want %d", r.mu.errors, 3*maxErrorMsgs)
	}
}
