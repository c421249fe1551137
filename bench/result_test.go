package bench

import (
	"bytes"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// parseBenchLine parses a result line as the Go benchmark format
// (golang.org/design/14313-benchmark-format) defines it, as benchstat
// reads it: a name that is "Benchmark" followed by an upper-case letter,
// '/' or nothing, without spaces; an iteration count; then value/unit
// pairs, each value a float and each unit a word.
func parseBenchLine(line string) (name string, iters int64, metrics map[string]float64, err error) {
	f := strings.Fields(line)
	if len(f) < 2 || len(f)%2 != 0 {
		return "", 0, nil, fmt.Errorf("want name, iterations and value/unit pairs, have %d fields", len(f))
	}
	if !strings.HasPrefix(f[0], "Benchmark") {
		return "", 0, nil, fmt.Errorf("name %q does not start with Benchmark", f[0])
	}
	if rest := f[0][len("Benchmark"):]; rest != "" {
		if r, _ := utf8.DecodeRuneInString(rest); !unicode.IsUpper(r) && r != '/' {
			return "", 0, nil, fmt.Errorf("name %q: Benchmark must be followed by an upper-case letter", f[0])
		}
	}
	if iters, err = strconv.ParseInt(f[1], 10, 64); err != nil || iters < 0 {
		return "", 0, nil, fmt.Errorf("iterations %q", f[1])
	}
	metrics = map[string]float64{}
	for i := 2; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return "", 0, nil, fmt.Errorf("value %q", f[i])
		}
		if _, dup := metrics[f[i+1]]; dup {
			return "", 0, nil, fmt.Errorf("unit %q twice", f[i+1])
		}
		metrics[f[i+1]] = v
	}
	return f[0], iters, metrics, nil
}

func TestBenchName(t *testing.T) {
	o := DefaultOptions()
	o.Clients, o.Conns, o.TargetName = 100, 10, "metastore"
	for _, c := range []struct {
		scenario string
		tweak    func(*Options)
		want     string
	}{
		{"put", nil, "BenchmarkPut/target=metastore/clients=100/conns=10"},
		{"range", func(o *Options) { o.Consistency = "s" }, "BenchmarkRange/target=metastore/consistency=s/clients=100/conns=10"},
		{"range", func(o *Options) { o.PrefixPage = 500 }, "BenchmarkRange/target=metastore/page=500/consistency=l/clients=100/conns=10"},
		{"txn-k8s", nil, "BenchmarkTxnK8s/target=metastore/clients=100/conns=10"},
		{"watch", nil, "BenchmarkWatch/target=metastore/watchers=100/streams=10/clients=100/conns=10"},
		{"load", func(o *Options) { o.LoadKeys = 1e6 }, "BenchmarkLoad/target=metastore/keys=1000000/txn-ops=128/clients=100/conns=10"},
		{"compaction", nil, "BenchmarkCompaction/target=metastore/retention=10000/interval=5s/clients=100/conns=10"},
	} {
		oc := o
		if c.tweak != nil {
			c.tweak(&oc)
		}
		sc, err := NewScenario(c.scenario)
		if err != nil {
			t.Fatal(err)
		}
		if got := benchName(sc, &oc); got != c.want {
			t.Errorf("%s: name %q, want %q", c.scenario, got, c.want)
		}
	}
}

func TestBenchstatLine(t *testing.T) {
	r := &Result{
		Name:      "BenchmarkPut/target=metastore/clients=100/conns=10",
		Ops:       41230,
		OpsPerSec: 8245.93,
		Latency:   Summary{MeanNs: 2425117.4, P99Ns: 5111807},
	}
	const want = "BenchmarkPut/target=metastore/clients=100/conns=10 41230 2425117 ns/op 5111807 p99-ns 8245.9 ops/s"
	if got := r.BenchstatLine(); got != want {
		t.Errorf("line\n%s\nwant\n%s", got, want)
	}
	r.Extra = []Metric{{Value: 97583103, Unit: "p99-during-compact-ns"}, {Value: 27320.7, Unit: "keys/s"}}
	name, n, m, err := parseBenchLine(r.BenchstatLine())
	if err != nil {
		t.Fatalf("%q: %v", r.BenchstatLine(), err)
	}
	wantM := map[string]float64{"ns/op": 2425117, "p99-ns": 5111807, "ops/s": 8245.9, "p99-during-compact-ns": 97583103, "keys/s": 27320.7}
	if name != r.Name || n != r.Ops || !reflect.DeepEqual(m, wantM) {
		t.Errorf("parsed %q %d %v, want %q %d %v", name, n, m, r.Name, r.Ops, wantM)
	}
}

func TestFormatNs(t *testing.T) {
	for _, c := range []struct {
		ns   int64
		want string
	}{
		{0, "0ns"},
		{999, "999ns"},
		{1500, "1.50µs"},
		{812_000, "812µs"},
		{4_100_000, "4.10ms"},
		{42_300_000, "42.3ms"},
		{1_200_000_000, "1.20s"},
	} {
		if got := FormatNs(c.ns); got != c.want {
			t.Errorf("FormatNs(%d) = %q, want %q", c.ns, got, c.want)
		}
	}
}

func TestResultFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	r := &Result{Name: "BenchmarkPut/target=etcd/clients=1/conns=1", Scenario: "put", Target: "etcd",
		Options: DefaultOptions(), Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Ops: 3,
		Latency: Summary{Count: 3, P99Ns: 7}, Timeline: []Point{{EndSec: 1, DurSec: 1, Ops: 3, OpsPerSec: 3}}}
	path, err := r.WriteFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "put-etcd-20260102-030405.json"); path != want {
		t.Errorf("path %s, want %s", path, want)
	}
	got, err := ReadResult(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, r)
	}
}

func TestCompare(t *testing.T) {
	mk := func(name, target string, ops float64, p99 int64) *Result {
		return &Result{Name: name, Target: target, OpsPerSec: ops, Latency: Summary{P99Ns: p99}}
	}
	var buf bytes.Buffer
	err := Compare(&buf, []*Result{
		mk("BenchmarkPut/target=metastore/clients=100/conns=10", "metastore", 40000, 5_000_000),
		mk("BenchmarkRange/target=metastore/consistency=l/clients=100/conns=10", "metastore", 90000, 2_000_000),
		mk("BenchmarkPut/target=etcd/clients=100/conns=10", "etcd", 20000, 10_000_000),
		mk("BenchmarkRange/target=etcd/consistency=l/clients=100/conns=10", "etcd", 0, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `BENCHMARK                                 TARGET     OPS/S    P99     OPS/S FIRST/THIS  P99 FIRST/THIS
Put/clients=100/conns=10                  metastore  40000.0  5.00ms  -                 -
Put/clients=100/conns=10                  etcd       20000.0  10.0ms  2.00x             0.50x
Range/consistency=l/clients=100/conns=10  metastore  90000.0  2.00ms  -                 -
Range/consistency=l/clients=100/conns=10  etcd       0.0      0ns     n/a               n/a
`
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
