// Command metastore-bench drives any etcd v3 endpoint (MetaStore or etcd)
// with one scenario and reports latency percentiles, throughput over time,
// a JSON result file and one benchstat line; chart and compare read the
// result files.
//
//	metastore-bench put --endpoints 127.0.0.1:2379 --clients 100 --conns 10 --duration 30s --target-name metastore --out results
//	metastore-bench chart --out put.png results/put-metastore-*.json results/put-etcd-*.json
//	metastore-bench compare results/put-metastore-*.json results/put-etcd-*.json
//	metastore-bench noop-server --listen 127.0.0.1:2379
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"

	"github.com/metastore/metastore/bench"
)

// exitUsage is the exit status for a bad command line.
const exitUsage = 2

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	switch cmd := args[0]; cmd {
	case "chart":
		return runChart(args[1:], stderr)
	case "compare":
		return runCompare(args[1:], stdout, stderr)
	case "noop-server":
		return runNoopServer(args[1:], stderr)
	default:
		sc, err := bench.NewScenario(cmd)
		if err != nil {
			fmt.Fprintln(stderr, err)
			usage(stderr)
			return exitUsage
		}
		return runScenario(sc, args[1:], stdout, stderr)
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage:
  metastore-bench SCENARIO [flags]    run a scenario: %s
  metastore-bench chart --out FILE.png RESULT.json...
  metastore-bench compare RESULT.json RESULT.json...
  metastore-bench noop-server [--listen ADDR]   a KV server that does nothing (the ceiling)
Run "metastore-bench SCENARIO --help" for the flags.
`, strings.Join(bench.ScenarioNames(), ", "))
}

func runScenario(sc bench.Scenario, args []string, stdout, stderr io.Writer) int {
	o := bench.DefaultOptions()
	fs := flag.NewFlagSet(sc.Name(), flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := strings.Join(o.Endpoints, ",")
	fs.StringVar(&endpoints, "endpoints", endpoints, "Comma-separated etcd client endpoints.")
	fs.IntVar(&o.Conns, "conns", o.Conns, "Number of gRPC connections.")
	fs.IntVar(&o.Clients, "clients", o.Clients, "Number of concurrent workers, spread over the connections.")
	fs.IntVar(&o.KeySize, "key-size", o.KeySize, "Key size in bytes, prefix included.")
	fs.IntVar(&o.ValSize, "val-size", o.ValSize, "Value size in bytes.")
	fs.IntVar(&o.KeySpace, "key-space", o.KeySpace, "Number of distinct keys.")
	fs.StringVar(&o.Prefix, "prefix", o.Prefix, "Prefix of every key.")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "Requests per second of all workers together; 0 is unlimited.")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "Length of the run (ignored with --total).")
	fs.Int64Var(&o.Total, "total", o.Total, "Number of operations of the run instead of --duration; 0 uses --duration.")
	fs.StringVar(&o.Consistency, "consistency", o.Consistency, "Read consistency: l (linearizable) or s (serializable).")
	fs.StringVar(&o.TargetName, "target-name", o.TargetName, "Label of the server in the outputs (metastore, etcd).")
	fs.StringVar(&o.OutDir, "out", o.OutDir, "Directory for the result JSON and profiles; empty writes none.")
	fs.StringVar(&o.PprofURL, "pprof-url", o.PprofURL, "Server URL (or its /debug/pprof/ URL) to capture CPU, heap, mutex and block profiles from during the run.")
	fs.IntVar(&o.PprofSeconds, "pprof-seconds", o.PprofSeconds, "Length of the CPU, mutex and block profiles; 0 is the run's duration (10 with --total).")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", o.RequestTimeout, "Timeout of one request.")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", o.DialTimeout, "Timeout of connecting.")
	fs.DurationVar(&o.Interval, "interval", o.Interval, "Width of one throughput-over-time interval.")
	selfProfile := fs.String("self-cpuprofile", "", "Write the load tool's own CPU profile to this file (to check that it is not the bottleneck).")
	progress := fs.String("progress", "auto", "Progress report: auto (a bar if stdout is a terminal, else lines), bar, lines or none.")
	fs.IntVar(&o.PrefixPage, "prefix-page", o.PrefixPage, "range: list the prefix in pages of this many keys instead of point gets; txn-k8s: list page size (default 500).")
	fs.BoolVar(&o.Prefill, "prefill", o.Prefill, "range, txn-k8s: write the whole key space before the clock starts.")
	fs.StringVar(&o.TxnMix, "txn-mix", o.TxnMix, "txn-k8s: weights of create, update, delete, get and list.")
	fs.IntVar(&o.Watchers, "watchers", o.Watchers, "watch: number of watchers on the prefix.")
	fs.IntVar(&o.WatchStreams, "watch-streams", o.WatchStreams, "watch: number of gRPC watch streams the watchers share.")
	fs.DurationVar(&o.LeaseTTL, "lease-ttl", o.LeaseTTL, "lease: TTL of each lease.")
	fs.IntVar(&o.LeaseKeys, "lease-keys", o.LeaseKeys, "lease: keys put with each lease.")
	fs.IntVar(&o.LeaseKeepalives, "lease-keepalives", o.LeaseKeepalives, "lease: keep-alives per lease before its revoke.")
	fs.Int64Var(&o.LoadKeys, "keys", o.LoadKeys, "load: number of keys to write (default --key-space).")
	fs.IntVar(&o.TxnOps, "txn-ops", o.TxnOps, "load, prefill: puts per transaction (at most the server's --max-txn-ops; 1 sends plain puts).")
	fs.DurationVar(&o.CompactInterval, "compact-interval", o.CompactInterval, "compaction: time between compactions.")
	fs.Int64Var(&o.CompactRetention, "compact-retention", o.CompactRetention, "compaction: revisions kept behind the current one.")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	o.Endpoints = splitList(endpoints)
	o.Command = "metastore-bench " + sc.Name() + " " + strings.Join(args, " ")
	switch *progress {
	case "auto":
		o.Progress, o.ProgressBar = stdout, isTerminal(os.Stdout)
	case "bar":
		o.Progress, o.ProgressBar = stdout, true
	case "lines":
		o.Progress = stdout
	case "none":
	default:
		fmt.Fprintf(stderr, "--progress %q is not one of auto, bar, lines, none\n", *progress)
		return exitUsage
	}
	if err := o.Validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}

	if *selfProfile != "" {
		f, err := os.Create(*selfProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, sc, o)
	if res == nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	printSummary(stderr, res)
	fmt.Fprintln(stdout, res.BenchstatLine())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// printSummary writes the human-readable report.
func printSummary(w io.Writer, r *bench.Result) {
	fmt.Fprintf(w, "%s %s: %d ops in %.2fs = %.1f ops/s, %d errors\n", r.Scenario, r.Target, r.Ops, r.ElapsedSec, r.OpsPerSec, r.Errors)
	fmt.Fprintf(w, "  latency  %s\n", formatSummary(r.Latency))
	classes := make([]string, 0, len(r.Classes))
	for name := range r.Classes {
		classes = append(classes, name)
	}
	sort.Strings(classes)
	for _, name := range classes {
		if s := r.Classes[name]; s.Count > 0 {
			fmt.Fprintf(w, "  %-8s %s\n", name, formatSummary(s))
		}
	}
	if len(r.Counters) > 0 {
		names := make([]string, 0, len(r.Counters))
		for name := range r.Counters {
			names = append(names, name)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, name := range names {
			fmt.Fprintf(&b, " %s=%d", name, r.Counters[name])
		}
		fmt.Fprintf(w, "  counters%s\n", b.String())
	}
	for _, e := range r.ErrorMsgs {
		fmt.Fprintf(w, "  error x%d: %s\n", e.Count, e.Msg)
	}
	if r.Options.OutDir != "" {
		fmt.Fprintf(w, "  result   %s.json\n", strings.TrimSuffix(r.Options.OutDir, "/")+"/"+r.FileStem())
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(w, "  profile  %s\n", strings.TrimSuffix(r.Options.OutDir, "/")+"/"+p)
	}
}

func formatSummary(s bench.Summary) string {
	return fmt.Sprintf("n=%d p50=%s p90=%s p99=%s p99.9=%s max=%s", s.Count, bench.FormatNs(s.P50Ns),
		bench.FormatNs(s.P90Ns), bench.FormatNs(s.P99Ns), bench.FormatNs(s.P999Ns), bench.FormatNs(s.MaxNs))
}

func runChart(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("chart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "chart.png", "PNG file to write.")
	width := fs.Int("width", 1200, "Image width in pixels.")
	height := fs.Int("height", 800, "Image height in pixels.")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	results, err := readResults(fs.Args(), 1)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if err := bench.WriteChart(*out, results, *width, *height); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s\n", *out)
	return 0
}

func runCompare(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	results, err := readResults(fs.Args(), 2)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if err := bench.Compare(stdout, results); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// runNoopServer serves bench.NoopServer until SIGINT or SIGTERM.
func runNoopServer(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("noop-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:2379", "Address to serve the etcd v3 KV API on.")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &bench.NoopServer{}
	fmt.Fprintf(stderr, "noop-server: serving the KV API on %s\n", lis.Addr())
	if err := s.Serve(ctx, lis); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stderr, "noop-server: answered %d requests\n", s.Calls())
	return 0
}

// parseFlags parses args; if it fails, ok is false and code is the exit
// status (0 for --help).
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return exitUsage, false
	}
	return 0, true
}

func readResults(paths []string, atLeast int) ([]*bench.Result, error) {
	if len(paths) < atLeast {
		return nil, fmt.Errorf("need at least %d result file(s), have %d", atLeast, len(paths))
	}
	var results []*bench.Result
	for _, p := range paths {
		r, err := bench.ReadResult(p)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	return results, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
