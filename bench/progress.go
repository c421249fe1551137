package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress reports a run once per interval: a bar redrawn in place on a
// terminal, otherwise one line per interval starting with "#", which
// benchstat ignores.
type progress struct {
	w     io.Writer // nil: silent
	bar   bool
	label string
	dur   time.Duration // the run's length, or 0
	total int64         // the run's operations, or 0
	ops   int64         // so far
}

// progressBarWidth is the bar's length in characters.
const progressBarWidth = 30

func (p *progress) update(elapsed time.Duration, pt Point) {
	if p.w == nil {
		return
	}
	p.ops += pt.Ops
	stats := fmt.Sprintf("%.0f ops/s  p50 %s  p99 %s  errors %d", pt.OpsPerSec,
		FormatNs(pt.Latency.P50Ns), FormatNs(pt.Latency.P99Ns), pt.Errors)
	if !p.bar {
		fmt.Fprintf(p.w, "# %s %5.1fs %d ops  %s\n", p.label, elapsed.Seconds(), p.ops, stats)
		return
	}
	frac := 0.0
	switch {
	case p.total > 0:
		frac = float64(p.ops) / float64(p.total)
	case p.dur > 0:
		frac = elapsed.Seconds() / p.dur.Seconds()
	}
	filled := int(min(max(frac, 0), 1) * progressBarWidth)
	fmt.Fprintf(p.w, "\r%s [%s%s] %5.1fs  %s\x1b[K", p.label,
		strings.Repeat("#", filled), strings.Repeat("-", progressBarWidth-filled), elapsed.Seconds(), stats)
}

// finish clears the bar so that the summary starts on a clean line.
func (p *progress) finish() {
	if p.w != nil && p.bar {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
