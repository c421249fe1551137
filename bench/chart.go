package bench

import (
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chartDPI sets the size of text and lines relative to the image.
const chartDPI = 96

// chartPercentiles are drawn in the latency panel, each with its dashes.
var chartPercentiles = []struct {
	name string
	get  func(Summary) int64
}{
	{"p50", func(s Summary) int64 { return s.P50Ns }},
	{"p99", func(s Summary) int64 { return s.P99Ns }},
	{"p99.9", func(s Summary) int64 { return s.P999Ns }},
}

// WriteChart draws results side by side into a PNG of widthPx x heightPx
// pixels at path: throughput over time on top, latency percentiles over
// time (log scale) below, one color per result.
func WriteChart(path string, results []*Result, widthPx, heightPx int) error {
	if len(results) == 0 {
		return fmt.Errorf("bench: chart: no results")
	}
	if widthPx < 200 || heightPx < 200 {
		return fmt.Errorf("bench: chart: %dx%d pixels is too small (need >= 200x200)", widthPx, heightPx)
	}
	tput := plot.New()
	tput.Title.Text = chartTitle(results) + ": throughput per interval"
	tput.X.Label.Text = "time (s)"
	tput.X.Min = 0
	tput.Y.Label.Text = "ops/s"
	tput.Y.Min = 0
	tput.Legend.Top = true
	tput.Legend.Left = true
	tput.Legend.XOffs = vg.Millimeter * 3
	lat := plot.New()
	lat.Title.Text = "latency per interval: solid p50, dashed p99, dotted p99.9"
	lat.X.Label.Text = "time (s)"
	lat.X.Min = 0
	lat.Y.Label.Text = "ms (log scale)"
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = logTicks125{}
	maxOps := 0.0

	latLines := 0
	for i, r := range results {
		label := chartLabel(r, results)
		color := plotutil.Color(i)
		timeline := chartable(r)
		ops := make(plotter.XYs, 0, len(timeline))
		for _, p := range timeline {
			ops = append(ops, plotter.XY{X: p.midSec(), Y: p.OpsPerSec})
			maxOps = max(maxOps, p.OpsPerSec)
		}
		line, err := plotter.NewLine(ops)
		if err != nil {
			return fmt.Errorf("bench: chart %s: %w", label, err)
		}
		line.Color = color
		line.Width = vg.Points(1.5)
		tput.Add(line)
		tput.Legend.Add(label, line)

		for j, pc := range chartPercentiles {
			pts := make(plotter.XYs, 0, len(timeline))
			for _, p := range timeline {
				if v := pc.get(p.Latency); v > 0 && p.Ops > 0 { // empty intervals cannot go on a log scale
					pts = append(pts, plotter.XY{X: p.midSec(), Y: float64(v) / 1e6})
				}
			}
			if len(pts) == 0 {
				continue
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return fmt.Errorf("bench: chart %s %s: %w", label, pc.name, err)
			}
			l.Color = color
			l.Width = vg.Points(1.5)
			l.Dashes = [][]vg.Length{{}, {vg.Points(6), vg.Points(3)}, {vg.Points(1.5), vg.Points(2.5)}}[j]
			lat.Add(l)
			latLines++
		}
	}
	// Headroom above the lines for the legend.
	tput.Y.Max = maxOps * (1 + 0.08*float64(len(results)+1))
	if latLines == 0 {
		lat.Y.Scale = plot.LinearScale{} // nothing to draw: a log scale would panic
		lat.Y.Tick.Marker = plot.DefaultTicks{}
	}

	img := image.NewRGBA(image.Rect(0, 0, widthPx, heightPx))
	c := vgimg.NewWith(vgimg.UseImage(img), vgimg.UseDPI(chartDPI))
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	tput.Draw(tiles.At(dc, 0, 0))
	lat.Draw(tiles.At(dc, 0, 1))

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c.Image()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// midSec is the middle of the point's interval, where the chart draws it.
func (p Point) midSec() float64 { return p.EndSec - p.DurSec/2 }

// chartTitle is the scenarios charted, in order, without repeats.
func chartTitle(results []*Result) string {
	var names []string
	for _, r := range results {
		if indexOf(names, r.Scenario) < 0 {
			names = append(names, r.Scenario)
		}
	}
	return strings.Join(names, ", ")
}

// logTicks125 labels a log axis at 1, 2 and 5 times the powers of ten,
// with unlabelled minor ticks at the other integers: plot.LogTicks labels
// only the powers of ten, often a single one on a latency axis.
type logTicks125 struct{}

func (logTicks125) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		p := math.Pow(10, e)
		for m := 1; m < 10; m++ {
			v := float64(m) * p
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// chartable drops the timeline's last interval if it is less than half
// as wide as the others: the tail of the run, whose rate is noise.
func chartable(r *Result) []Point {
	tl := r.Timeline
	if n := len(tl); n > 1 && tl[n-1].DurSec < tl[0].DurSec/2 {
		tl = tl[:n-1]
	}
	return tl
}

// chartLabel names a result in the legend: its target, plus its scenario
// if the results mix scenarios, plus its start time if two would read
// the same.
func chartLabel(r *Result, all []*Result) string {
	mixed, same := false, 0
	for _, o := range all {
		mixed = mixed || o.Scenario != r.Scenario
		if o.Target == r.Target && o.Scenario == r.Scenario {
			same++
		}
	}
	label := r.Target
	if mixed {
		label += " " + r.Scenario
	}
	if same > 1 {
		label += " " + r.Start.UTC().Format("15:04:05")
	}
	return label
}
