package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Scenario is one workload. Run calls Setup once before the clock starts,
// then NewWorker for each of Options.Clients workers, and calls each
// worker's Do in a loop until the run ends.
type Scenario interface {
	// Name is the subcommand ("put", "txn-k8s").
	Name() string
	// Params are the scenario's key=value parts of the benchmark name,
	// beyond target, clients and conns ("consistency=l").
	Params(o *Options) []string
	// Classes names the extra latency histograms that Do's class indexes.
	Classes() []string
	// Setup prepares the server and the scenario's shared state. It may
	// register counters, recorders and background goroutines with env.
	Setup(ctx context.Context, env *Env) error
	// NewWorker returns worker i, which sends through cli.
	NewWorker(i int, cli *clientv3.Client) Worker
}

// Worker is one concurrent client. Do sends one operation (usually one
// request) and returns the class its latency also counts in, or -1. Do
// returns ErrDone when the worker has no more work (load). Run times Do.
type Worker interface {
	Do(ctx context.Context) (class int, err error)
}

// ErrDone tells Run that a worker has finished its share of the work.
var ErrDone = errors.New("bench: worker done")

// mainRecorder is implemented by scenarios whose workers' latencies are
// not the main histogram (watch: the main histogram is event delivery).
type mainRecorder interface {
	workersRecordMain() bool
}

// drainer is implemented by scenarios that have work to finish after the
// workers stop (watch: events still in flight). Drain's time counts in the
// run's elapsed time.
type drainer interface {
	Drain(ctx context.Context, env *Env) error
}

// extraMetrics is implemented by scenarios that add value/unit pairs to
// their benchstat line.
type extraMetrics interface {
	extraMetrics(r *Result) []Metric
}

// Env is what Run shares with a scenario.
type Env struct {
	Opts    *Options
	Clients []*clientv3.Client
	Keys    *Keys
	Value   string // Opts.ValSize bytes

	col      *collector
	counters map[string]*atomic.Int64
	bg       []func(ctx context.Context)
}

// Counter returns the named counter, reported in Result.Counters. Call it
// from Setup, NewWorker or Drain, never while the workers run (it is not
// safe for concurrent use; the counter it returns is).
func (e *Env) Counter(name string) *atomic.Int64 {
	c, ok := e.counters[name]
	if !ok {
		c = new(atomic.Int64)
		e.counters[name] = c
	}
	return c
}

// Recorder returns the recorder for the scenario's own goroutine i (a
// watcher, the compactor); recorders are shared, see Recorder.
func (e *Env) Recorder(i int) *Recorder { return e.col.recorder(i) }

// Go registers f to run from the moment the clock starts until ctx is
// done, which happens when the workers stop. Call it from Setup.
func (e *Env) Go(f func(ctx context.Context)) { e.bg = append(e.bg, f) }

// scenarios lists every scenario by name.
var scenarios = map[string]func() Scenario{
	"put":        func() Scenario { return &putScenario{} },
	"range":      func() Scenario { return &rangeScenario{} },
	"txn-k8s":    func() Scenario { return &k8sScenario{} },
	"watch":      func() Scenario { return &watchScenario{} },
	"lease":      func() Scenario { return &leaseScenario{} },
	"load":       func() Scenario { return &loadScenario{} },
	"compaction": func() Scenario { return &compactionScenario{} },
}

// ScenarioNames lists the scenarios, sorted.
func ScenarioNames() []string {
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewScenario returns the named scenario.
func NewScenario(name string) (Scenario, error) {
	f, ok := scenarios[name]
	if !ok {
		return nil, fmt.Errorf("bench: unknown scenario %q (have %s)", name, strings.Join(ScenarioNames(), ", "))
	}
	return f(), nil
}
