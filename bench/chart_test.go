package bench

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func syntheticResult(target string, opsPerSec float64, p99 int64, seconds int) *Result {
	r := &Result{Name: "BenchmarkPut/target=" + target, Scenario: "put", Target: target, Start: time.Unix(0, 0)}
	for i := 1; i <= seconds; i++ {
		r.Timeline = append(r.Timeline, Point{EndSec: float64(i), DurSec: 1, Ops: int64(opsPerSec), OpsPerSec: opsPerSec + float64(i*10),
			Latency: Summary{Count: int64(opsPerSec), P50Ns: p99 / 4, P99Ns: p99, P999Ns: 2 * p99}})
	}
	// A short tail interval, which the chart leaves out.
	r.Timeline = append(r.Timeline, Point{EndSec: float64(seconds) + 0.01, DurSec: 0.01, Ops: 1, OpsPerSec: 100, Latency: Summary{P50Ns: 1, P99Ns: 1, P999Ns: 1}})
	return r
}

func TestWriteChart(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name    string
		results []*Result
		w, h    int
	}{
		{"two targets", []*Result{syntheticResult("metastore", 9000, 4e6, 10), syntheticResult("etcd", 7000, 6e6, 10)}, 1200, 800},
		{"one result, odd size", []*Result{syntheticResult("metastore", 100, 1e5, 3)}, 640, 401},
		{"empty timeline", []*Result{{Name: "BenchmarkPut", Scenario: "put", Target: "x"}}, 300, 300},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".png")
			if err := WriteChart(path, c.results, c.w, c.h); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatal(err)
			}
			if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
				t.Errorf("image %dx%d, want %dx%d", b.Dx(), b.Dy(), c.w, c.h)
			}
		})
	}
	if err := WriteChart(filepath.Join(dir, "none.png"), nil, 800, 600); err == nil {
		t.Error("no results: no error")
	}
}

func TestChartLabel(t *testing.T) {
	a := syntheticResult("metastore", 1, 1, 1)
	b := syntheticResult("etcd", 1, 1, 1)
	c := syntheticResult("etcd", 1, 1, 1)
	c.Start = time.Date(2026, 1, 1, 12, 30, 0, 0, time.UTC)
	if got := chartLabel(a, []*Result{a, b}); got != "metastore" {
		t.Errorf("label %q", got)
	}
	if got := chartLabel(c, []*Result{a, b, c}); got != "etcd 12:30:00" {
		t.Errorf("label %q, want the start time to tell two etcd runs apart", got)
	}
}
