package bench

import (
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms record nanoseconds with 3 significant digits from
// histLowestNs to histHighestNs (about 224 KiB each); longer values are
// clamped to histHighestNs so that a stall is counted, not dropped.
const (
	histLowestNs     = 1
	histHighestNs    = int64(100 * time.Second)
	histSignificantD = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowestNs, histHighestNs, histSignificantD)
}

// recordNs records one latency, clamped to the histogram's range.
func recordNs(h *hdrhistogram.Histogram, ns int64) {
	_ = h.RecordValue(min(max(ns, 0), histHighestNs)) // in range: cannot fail
}

// Summary is a latency distribution reduced to what the outputs show. All
// values are nanoseconds, exact to 3 significant digits.
type Summary struct {
	Count  int64   `json:"count"`
	MeanNs float64 `json:"mean_ns"`
	MinNs  int64   `json:"min_ns"`
	P50Ns  int64   `json:"p50_ns"`
	P90Ns  int64   `json:"p90_ns"`
	P99Ns  int64   `json:"p99_ns"`
	P999Ns int64   `json:"p999_ns"`
	MaxNs  int64   `json:"max_ns"`
}

// summarize reduces h; an empty histogram gives the zero Summary.
func summarize(h *hdrhistogram.Histogram) Summary {
	if h.TotalCount() == 0 {
		return Summary{}
	}
	q := h.ValueAtPercentilesSlice([]float64{50, 90, 99, 99.9})
	return Summary{
		Count:  h.TotalCount(),
		MeanNs: h.Mean(),
		MinNs:  h.Min(),
		P50Ns:  q[0],
		P90Ns:  q[1],
		P99Ns:  q[2],
		P999Ns: q[3],
		MaxNs:  h.Max(),
	}
}
