package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Result is one run, as stored in its JSON file.
type Result struct {
	// Name is the benchstat name: "BenchmarkPut/target=etcd/clients=100/conns=10".
	Name     string `json:"name"`
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	// Command is the command line that made the run.
	Command string  `json:"command,omitempty"`
	Options Options `json:"options"`
	Host    Host    `json:"host"`

	Start      time.Time `json:"start"`
	ElapsedSec float64   `json:"elapsed_s"`
	// Ops counts the operations of the main histogram, Errors the failed
	// ones (not in the histogram).
	Ops       int64   `json:"ops"`
	Errors    int64   `json:"errors"`
	OpsPerSec float64 `json:"ops_per_s"`
	Latency   Summary `json:"latency"`
	// Classes are the scenario's extra histograms by name.
	Classes  map[string]Summary `json:"classes,omitempty"`
	Counters map[string]int64   `json:"counters,omitempty"`
	// Extra are the scenario's additions to the benchstat line.
	Extra     []Metric     `json:"extra,omitempty"`
	Timeline  []Point      `json:"timeline"`
	ErrorMsgs []ErrorCount `json:"error_msgs,omitempty"`
	// Profiles are the files captured from the server's /debug/pprof,
	// relative to the result file's directory.
	Profiles []string `json:"profiles,omitempty"`
}

// Metric is a value/unit pair of a benchstat line.
type Metric struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// ErrorCount is a distinct error message and how often it occurred.
type ErrorCount struct {
	Msg   string `json:"msg"`
	Count int64  `json:"count"`
}

// Host describes the machine the tool ran on.
type Host struct {
	Hostname   string `json:"hostname"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
}

func thisHost() Host {
	name, _ := os.Hostname()
	return Host{Hostname: name, OS: runtime.GOOS, Arch: runtime.GOARCH, NumCPU: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()}
}

// benchName builds the benchstat name: the scenario in CamelCase, then
// key=value parts (target, the scenario's params, clients, conns).
func benchName(sc Scenario, o *Options) string {
	var b strings.Builder
	b.WriteString("Benchmark")
	for _, w := range strings.FieldsFunc(sc.Name(), func(r rune) bool { return r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	parts := append([]string{"target=" + o.TargetName}, sc.Params(o)...)
	parts = append(parts, fmt.Sprintf("clients=%d", o.Clients), fmt.Sprintf("conns=%d", o.Conns))
	for _, p := range parts {
		b.WriteByte('/')
		b.WriteString(strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) || r == '/' {
				return '_'
			}
			return r
		}, p))
	}
	return b.String()
}

// BenchstatLine formats the result in the Go benchmark format
// (golang.org/design/14313-benchmark-format): name, iteration count (the
// operations), then value/unit pairs: mean latency (ns/op), p99 (p99-ns),
// throughput (ops/s) and the scenario's extras.
func (r *Result) BenchstatLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %d %s ns/op %d p99-ns %s ops/s", r.Name, r.Ops,
		strconv.FormatFloat(r.Latency.MeanNs, 'f', 0, 64), r.Latency.P99Ns, strconv.FormatFloat(r.OpsPerSec, 'f', 1, 64))
	for _, m := range r.Extra {
		fmt.Fprintf(&b, " %s %s", strconv.FormatFloat(m.Value, 'f', -1, 64), m.Unit)
	}
	return b.String()
}

// FileStem is the result's file name without extension:
// scenario-target-YYYYMMDD-HHMMSS.
func (r *Result) FileStem() string {
	return fmt.Sprintf("%s-%s-%s", r.Scenario, r.Target, r.Start.UTC().Format("20060102-150405"))
}

// WriteFile writes the result as indented JSON to dir/FileStem().json and
// returns the path.
func (r *Result) WriteFile(dir string) (string, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, r.FileStem()+".json")
	return path, os.WriteFile(path, append(data, '\n'), 0o644)
}

// ReadResult reads a result JSON file.
func ReadResult(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	if r.Name == "" || r.Scenario == "" {
		return nil, fmt.Errorf("bench: %s: not a metastore-bench result", path)
	}
	return &r, nil
}

// FormatNs prints a duration in ns with 3 significant digits and a unit
// that suits it ("812µs", "4.10ms", "1.20s").
func FormatNs(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", ns)
	case d < time.Millisecond:
		return strconv.FormatFloat(float64(ns)/1e3, 'f', precFor(float64(ns)/1e3), 64) + "µs"
	case d < time.Second:
		return strconv.FormatFloat(float64(ns)/1e6, 'f', precFor(float64(ns)/1e6), 64) + "ms"
	default:
		return strconv.FormatFloat(float64(ns)/1e9, 'f', precFor(float64(ns)/1e9), 64) + "s"
	}
}

// precFor is the number of decimals that shows v (in [1, 1000)) with 3
// significant digits.
func precFor(v float64) int {
	switch {
	case v >= 100:
		return 0
	case v >= 10:
		return 1
	default:
		return 2
	}
}
