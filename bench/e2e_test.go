package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// briefOptions are the options of a ~1s run against endpoint, under a
// prefix of the test's own.
func briefOptions(t *testing.T, endpoint, prefix string) Options {
	o := DefaultOptions()
	o.Endpoints = []string{endpoint}
	o.Prefix = prefix
	o.KeySize = len(prefix) + 16
	o.Clients, o.Conns = 8, 2
	o.KeySpace = 500
	o.Duration = time.Second
	o.Interval = 250 * time.Millisecond
	o.OutDir = t.TempDir()
	o.TargetName = "metastore"
	return o
}

// checkSane checks what every result must satisfy.
func checkSane(t *testing.T, r *Result) {
	t.Helper()
	if r.Ops <= 0 || r.Errors != 0 {
		t.Errorf("%d ops, %d errors (%v), want some ops and no errors", r.Ops, r.Errors, r.ErrorMsgs)
	}
	l := r.Latency
	if l.Count != r.Ops || !(0 <= l.P50Ns && l.P50Ns <= l.P90Ns && l.P90Ns <= l.P99Ns && l.P99Ns <= l.P999Ns && l.P999Ns <= l.MaxNs) {
		t.Errorf("latency %+v not ordered or not counting the %d ops", l, r.Ops)
	}
	if l.MaxNs <= 0 || l.MeanNs < float64(l.MinNs) || l.MeanNs > float64(l.MaxNs) {
		t.Errorf("mean %v outside [min, max]", l.MeanNs)
	}
	if want := float64(r.Ops) / r.ElapsedSec; math.Abs(r.OpsPerSec-want) > 1e-6*want {
		t.Errorf("ops/s %v, want ops/elapsed %v", r.OpsPerSec, want)
	}
	var sum int64
	for _, p := range r.Timeline {
		sum += p.Ops
	}
	if len(r.Timeline) == 0 || sum != r.Ops {
		t.Errorf("timeline of %d points sums to %d ops, want %d", len(r.Timeline), sum, r.Ops)
	}
	if r.Options.Total == 0 && r.Scenario != "load" && len(r.Timeline) < 4 {
		t.Errorf("timeline of %d points for a 1s run with 250ms intervals, want >= 4", len(r.Timeline))
	}
	if _, n, m, err := parseBenchLine(r.BenchstatLine()); err != nil || n != r.Ops || m["ops/s"] <= 0 {
		t.Errorf("benchstat line %q: %v", r.BenchstatLine(), err)
	}
	read, err := ReadResult(filepath.Join(r.Options.OutDir, r.FileStem()+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if read.Name != r.Name || read.Ops != r.Ops || read.Latency != r.Latency || len(read.Timeline) != len(r.Timeline) {
		t.Errorf("result file differs from the result: %s %d", read.Name, read.Ops)
	}
}

func classCount(r *Result) int64 {
	var n int64
	for _, s := range r.Classes {
		n += s.Count
	}
	return n
}

// TestScenariosAgainstMetaStore runs every scenario for about a second
// against a real MetaStore and checks the results.
func TestScenariosAgainstMetaStore(t *testing.T) {
	endpoint := startMetaStore(t)
	cli := testClient(t, endpoint)
	for _, c := range []struct {
		name     string
		scenario string
		tweak    func(*Options)
		check    func(*testing.T, *Options, *Result)
	}{
		{name: "put with profiles", scenario: "put",
			tweak: func(o *Options) {
				if hasPprof {
					o.PprofURL, o.PprofSeconds = endpoint, 1
				}
			},
			check: func(t *testing.T, o *Options, r *Result) {
				if !hasPprof {
					t.Log("the metastore binary has no --enable-pprof: profiles not checked")
					return
				}
				for _, kind := range []string{"cpu", "heap", "mutex", "block"} {
					f := r.FileStem() + "." + kind + ".pb.gz"
					if !slices.Contains(r.Profiles, f) {
						t.Errorf("profiles %v lack %s", r.Profiles, f)
					} else if fi, err := os.Stat(filepath.Join(o.OutDir, f)); err != nil || fi.Size() == 0 {
						t.Errorf("profile %s: %v", f, err)
					}
				}
			}},
		{name: "put total", scenario: "put", tweak: func(o *Options) { o.Total = 300 },
			check: func(t *testing.T, _ *Options, r *Result) {
				if r.Ops != 300 {
					t.Errorf("%d ops, want exactly --total 300", r.Ops)
				}
			}},
		{name: "put rate", scenario: "put", tweak: func(o *Options) { o.Rate = 200 },
			check: func(t *testing.T, _ *Options, r *Result) {
				if max := int64(200*r.ElapsedSec) + 1; r.Ops > max {
					t.Errorf("%d ops in %.2fs, more than --rate 200 allows (%d)", r.Ops, r.ElapsedSec, max)
				}
			}},
		{name: "range point", scenario: "range", tweak: func(o *Options) { o.Consistency = "s" }},
		{name: "range pages", scenario: "range", tweak: func(o *Options) { o.PrefixPage = 100 }},
		{name: "txn-k8s", scenario: "txn-k8s",
			check: func(t *testing.T, _ *Options, r *Result) {
				if n := classCount(r); n != r.Ops {
					t.Errorf("classes count %d ops, want all %d", n, r.Ops)
				}
				for _, op := range []string{"update", "get"} {
					if r.Classes[op].Count == 0 {
						t.Errorf("no %s in %v", op, r.Classes)
					}
				}
			}},
		{name: "watch", scenario: "watch", tweak: func(o *Options) { o.Watchers, o.WatchStreams, o.Rate = 6, 3, 300 },
			check: func(t *testing.T, o *Options, r *Result) {
				c := r.Counters
				if c["events"] != c["puts"]*int64(o.Watchers) || c["events_missing"] != 0 || r.Ops != c["events"] {
					t.Errorf("counters %v, ops %d: want every put delivered to each of %d watchers", c, r.Ops, o.Watchers)
				}
				if r.Classes["put"].Count != c["puts"] || r.Classes["from-send"].Count != r.Ops {
					t.Errorf("classes %v", r.Classes)
				}
			}},
		{name: "lease", scenario: "lease",
			check: func(t *testing.T, _ *Options, r *Result) {
				g, p, k := r.Classes["grant"].Count, r.Classes["put"].Count, r.Classes["keepalive"].Count
				if classCount(r) != r.Ops || g == 0 || p < g || p > 2*g || k > g {
					t.Errorf("classes %v: want grant:put:keepalive about 1:2:1", r.Classes)
				}
			}},
		{name: "load", scenario: "load", tweak: func(o *Options) { o.LoadKeys, o.TxnOps = 2000, 64 },
			check: func(t *testing.T, o *Options, r *Result) {
				if r.Counters["keys"] != 2000 || r.Ops != 32 {
					t.Errorf("counters %v, %d ops: want 2000 keys in 32 transactions", r.Counters, r.Ops)
				}
				resp, err := cli.Get(context.Background(), o.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
				if err != nil || resp.Count != 2000 {
					t.Errorf("server holds %v keys under %s (%v), want 2000", resp.Count, o.Prefix, err)
				}
			}},
		{name: "compaction", scenario: "compaction", tweak: func(o *Options) { o.CompactInterval, o.CompactRetention = 200*time.Millisecond, 50 },
			check: func(t *testing.T, _ *Options, r *Result) {
				during, outside := r.Classes["during-compaction"].Count, r.Classes["outside-compaction"].Count
				if during+outside != r.Ops || r.Counters["compactions"]+r.Counters["compactions_unfinished"] == 0 {
					t.Errorf("classes %v counters %v: want compactions and every put classified", r.Classes, r.Counters)
				}
				if r.Counters["compactions"] > 0 && r.Classes["compact"].Count != r.Counters["compactions"] {
					t.Errorf("compact class %v, counters %v", r.Classes["compact"], r.Counters)
				}
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := briefOptions(t, endpoint, fmt.Sprintf("/bt/%s/", strings.ReplaceAll(c.name, " ", "-")))
			if c.tweak != nil {
				c.tweak(&o)
			}
			sc, err := NewScenario(c.scenario)
			if err != nil {
				t.Fatal(err)
			}
			r, err := Run(context.Background(), sc, o)
			if err != nil {
				t.Fatal(err)
			}
			checkSane(t, r)
			if c.check != nil {
				c.check(t, &o, r)
			}
		})
	}
}

// TestK8sTxnShape walks one key through the apiserver's life cycle and
// checks each step against the server: a create guarded by
// mod_revision = 0, an update that loses a race to a write behind the
// cache's back and retries with the revision its failed transaction read,
// a create of an existing key, a delete that loses a race, and an update
// of a deleted key.
func TestK8sTxnShape(t *testing.T) {
	endpoint := startMetaStore(t)
	cli := testClient(t, endpoint)
	ctx := context.Background()
	o := briefOptions(t, endpoint, "/bt/k8s-shape/")
	o.KeySpace, o.Prefill = 4, false
	env := &Env{Opts: &o, Clients: []*clientv3.Client{cli}, Keys: NewKeys(o.Prefix, o.KeySize, o.KeySpace),
		Value: newValue(o.ValSize), col: newCollector(1, len(k8sOpNames)), counters: map[string]*atomic.Int64{}}
	s := &k8sScenario{}
	if err := s.Setup(ctx, env); err != nil {
		t.Fatal(err)
	}
	w := s.NewWorker(0, cli).(*k8sWorker)
	const i = 2
	key := env.Keys.Key(i)
	server := func() (modRev int64, value string) {
		t.Helper()
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return 0, ""
		}
		return resp.Kvs[0].ModRevision, string(resp.Kvs[0].Value)
	}
	counters := func() string {
		return fmt.Sprintf("conflicts=%d exists=%d notfound=%d", s.conflicts.Load(), s.exists.Load(), s.notFound.Load())
	}
	step := func(name string, f func() error, wantCounters string) {
		t.Helper()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rev, _ := server()
		if cached := s.modRev[i].Load(); cached != rev {
			t.Errorf("%s: cache holds revision %d, server %d", name, cached, rev)
		}
		if got := counters(); got != wantCounters {
			t.Errorf("%s: %s, want %s", name, got, wantCounters)
		}
	}
	behindTheCache := func() {
		t.Helper()
		if _, err := cli.Put(ctx, key, "someone else"); err != nil {
			t.Fatal(err)
		}
	}

	step("create", func() error { return w.create(ctx, i) }, "conflicts=0 exists=0 notfound=0")
	if _, v := server(); v != env.Value {
		t.Fatalf("after create the server holds %q", v)
	}
	behindTheCache()
	step("update after a write behind the cache", func() error { return w.update(ctx, i) }, "conflicts=1 exists=0 notfound=0")
	if _, v := server(); v != env.Value {
		t.Errorf("after update the server holds %q, want the worker's value", v)
	}
	step("create of an existing key", func() error { return w.create(ctx, i) }, "conflicts=1 exists=1 notfound=0")
	behindTheCache()
	step("delete after a write behind the cache", func() error { return w.delete(ctx, i) }, "conflicts=2 exists=1 notfound=0")
	if rev, _ := server(); rev != 0 {
		t.Errorf("after delete the key is still there")
	}
	step("update of a deleted key", func() error { return w.update(ctx, i) }, "conflicts=2 exists=1 notfound=1")
}
