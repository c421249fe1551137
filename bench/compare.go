package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Compare prints a table of results grouped by benchmark (the name
// without its target part), in the order given: each result's ops/s and
// p99, and for all but a group's first result the ratios of the first to
// it: "ops/s first/this" above 1 means the first is faster, "p99
// first/this" below 1 means its tail is shorter.
//
//	BENCHMARK                 TARGET     OPS/S    P99     OPS/S FIRST/THIS  P99 FIRST/THIS
//	Put/clients=100/conns=10  metastore  41230.0  5.11ms  -                 -
//	Put/clients=100/conns=10  etcd       30100.0  7.90ms  1.37x             0.65x
func Compare(w io.Writer, results []*Result) error {
	type group struct {
		key     string
		results []*Result
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, r := range results {
		k := groupKey(r)
		g, ok := byKey[k]
		if !ok {
			g = &group{key: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.results = append(g.results, r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCHMARK\tTARGET\tOPS/S\tP99\tOPS/S FIRST/THIS\tP99 FIRST/THIS")
	for _, g := range groups {
		first := g.results[0]
		for i, r := range g.results {
			opsRatio, p99Ratio := "-", "-"
			if i > 0 {
				opsRatio = ratio(first.OpsPerSec, r.OpsPerSec)
				p99Ratio = ratio(float64(first.Latency.P99Ns), float64(r.Latency.P99Ns))
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%s\t%s\n", g.key, r.Target, r.OpsPerSec,
				FormatNs(r.Latency.P99Ns), opsRatio, p99Ratio)
		}
	}
	return tw.Flush()
}

// groupKey is the result's name without "Benchmark" and its target part.
func groupKey(r *Result) string {
	parts := strings.Split(strings.TrimPrefix(r.Name, "Benchmark"), "/")
	out := parts[:1]
	for _, p := range parts[1:] {
		if !strings.HasPrefix(p, "target=") {
			out = append(out, p)
		}
	}
	return strings.Join(out, "/")
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
