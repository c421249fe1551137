package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// One run: a cluster, the traffic, one fault, the checks.

const (
	// linearizabilityTimeout bounds porcupine; past it the result is
	// Unknown, reported as its own status and failing the run.
	linearizabilityTimeout = 2 * time.Minute
	// settleTimeout bounds how long the members get to apply the run's
	// last revision after the traffic stops.
	settleTimeout = 15 * time.Second
)

type runConfig struct {
	Seed     uint64
	Members  int
	Profile  string // k8s or etcd
	Fault    string // a fault's name or "random"
	Duration time.Duration
	Out      string // results dir; a failing run keeps its dir there
	Binary   string
}

type runResult struct {
	Seed      uint64
	Members   int
	Profile   string
	Fault     string
	Status    string // pass, fail or unknown (porcupine timed out)
	Problems  []string
	Notes     []string
	Ops       int
	Stale     int
	Revisions int64
	Restarts  []time.Duration
	Unverif   int
	Dir       string
	Took      time.Duration
}

func (r runResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed=%d members=%d profile=%s fault=%s status=%s ops=%d stale-reads=%d revisions=%d unverified=%d took=%v",
		r.Seed, r.Members, r.Profile, r.Fault, r.Status, r.Ops, r.Stale, r.Revisions, r.Unverif, r.Took.Round(time.Second))
	if len(r.Restarts) > 0 {
		var ds []string
		for _, d := range r.Restarts {
			ds = append(ds, d.Round(time.Millisecond).String())
		}
		fmt.Fprintf(&b, " restarts-served-in=[%s]", strings.Join(ds, " "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n  note: %s", n)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "\n  PROBLEM: %s", p)
	}
	if r.Status != "pass" {
		fmt.Fprintf(&b, "\n  kept: %s", r.Dir)
	}
	return b.String()
}

// pickFault resolves "random" with the run's generator.
func pickFault(cfg runConfig, rng *rand.Rand) (fault, error) {
	if cfg.Fault == "random" || cfg.Fault == "" {
		fs := faultsFor(cfg.Members)
		return fs[rng.IntN(len(fs))], nil
	}
	f, ok := faultByName(cfg.Fault)
	if !ok {
		return fault{}, fmt.Errorf("unknown fault %q (known: %s)", cfg.Fault, faultNames())
	}
	if cfg.Members < f.minMembers {
		return fault{}, fmt.Errorf("fault %s needs %d members", f.name, f.minMembers)
	}
	return f, nil
}

// runOnce runs one seeded run and checks it.
func runOnce(cfg runConfig) (res runResult) {
	start := time.Now()
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	res = runResult{Seed: cfg.Seed, Members: cfg.Members, Profile: cfg.Profile, Status: "fail"}
	defer func() { res.Took = time.Since(start) }()
	problem := func(format string, args ...any) { res.Problems = append(res.Problems, fmt.Sprintf(format, args...)) }
	f, err := pickFault(cfg, rng)
	if err != nil {
		problem("%v", err)
		return res
	}
	res.Fault = f.name
	res.Dir = filepath.Join(cfg.Out, fmt.Sprintf("seed-%d-%s-%dm-%s", cfg.Seed, cfg.Profile, cfg.Members, f.name))
	os.RemoveAll(res.Dir)
	if err := os.MkdirAll(res.Dir, 0o755); err != nil {
		problem("%v", err)
		return res
	}
	c, err := startCluster(cfg.Binary, res.Dir, cfg.Members)
	if err != nil {
		problem("start cluster: %v", err)
		return res
	}
	defer c.stop()

	rec := newRecorder()
	tr := newTraffic(cfg.Profile, rec, c.endpoints())
	bg, stopBg := context.WithCancel(context.Background())
	var wgBg sync.WaitGroup
	var bgErrs []error
	var bgMu sync.Mutex
	goBg := func(fn func(ctx context.Context) error) {
		wgBg.Add(1)
		go func() {
			defer wgBg.Done()
			if err := fn(bg); err != nil {
				bgMu.Lock()
				bgErrs = append(bgErrs, err)
				bgMu.Unlock()
			}
		}()
	}
	var watchers []*watcher
	var probers []*prober
	for _, m := range c.members {
		w := newWatcher(m, rec)
		watchers = append(watchers, w)
		goBg(w.run)
		p := &prober{m: m, rec: rec, gen: &m.gen}
		probers = append(probers, p)
		goBg(p.run)
	}
	trafficCtx, stopTraffic := context.WithCancel(context.Background())
	var wgTr sync.WaitGroup
	for i := 0; i < trafficClients; i++ {
		crng := rand.New(rand.NewPCG(rng.Uint64(), uint64(i)))
		wgTr.Add(1)
		go func() {
			defer wgTr.Done()
			tr.runClient(trafficCtx, i, crng)
		}()
	}
	crng := rand.New(rand.NewPCG(rng.Uint64(), 99))
	wgTr.Add(1)
	go func() {
		defer wgTr.Done()
		tr.runCompactor(trafficCtx, crng)
	}()

	// The fault comes after a quarter of the run; the traffic goes on at
	// least a quarter of the run after the fault is removed.
	time.Sleep(cfg.Duration / 4)
	env := &faultEnv{c: c, t: tr, rng: rng}
	faultStart := time.Now()
	if err := f.inject(env); err != nil {
		problem("fault %s: %v", f.name, err)
		env.healAll()
	}
	env.note("fault %s took %v", f.name, time.Since(faultStart).Round(time.Millisecond))
	rest := cfg.Duration - time.Since(start)
	time.Sleep(max(rest, cfg.Duration/4))
	stopTraffic()
	wgTr.Wait()
	res.Notes, res.Restarts = env.notes, env.restarts
	res.Notes = append(res.Notes, fmt.Sprintf("%d compactions, %d defragmentations", tr.compactions.Load(), tr.defrags.Load()))
	for _, m := range c.members {
		if err := m.unexpectedExit(); err != nil {
			problem("%v", err)
		}
		if !m.running() {
			problem("%s is down at the end of the run", m.name)
		}
	}
	for _, d := range env.restarts {
		if d > memberReadyTimeout {
			problem("a restarted member took %v to serve, over the %v bound", d, memberReadyTimeout)
		}
	}

	// Settle: the last revision, applied by every member, delivered by
	// every watcher; then HashKV must agree.
	finalRev, err := settle(c, watchers)
	if err != nil {
		problem("%v", err)
	}
	stopBg()
	wgBg.Wait()
	for _, err := range bgErrs {
		problem("background: %v", err)
	}
	if finalRev > 0 {
		if err := compareHashKV(c, finalRev); err != nil {
			problem("%v", err)
		}
	}

	var logs []*WatchLog
	for _, w := range watchers {
		logs = append(logs, w.log)
	}
	h := rec.history(logs)
	var probes []Probe
	for _, p := range probers {
		probes = append(probes, p.probes...)
	}
	res.Ops, res.Stale, res.Revisions = len(h.Ops), len(h.Stale), finalRev
	status, problems, unverified := checkHistory(h, probes, finalRev, linearizabilityTimeout, filepath.Join(res.Dir, "linearizability.html"))
	res.Problems = append(res.Problems, problems...)
	res.Unverif = unverified
	switch {
	case len(res.Problems) > 0:
		res.Status = "fail"
	case status == porcupine.Unknown:
		res.Status = "unknown"
	default:
		res.Status = "pass"
	}
	c.stop()
	if res.Status == "pass" {
		os.RemoveAll(res.Dir)
	}
	return res
}

// checkHistory runs every check on a finished history.
func checkHistory(h History, probes []Probe, finalRev int64, timeout time.Duration, vizPath string) (porcupine.CheckResult, []string, int) {
	rl, problems := buildRevisionLog(h.Watches)
	for _, w := range h.Watches {
		problems = append(problems, checkWatch(w, rl, h.Compactions, finalRev)...)
	}
	p, u1 := checkAcknowledged(h.Ops, rl)
	problems = append(problems, p...)
	p, u2 := checkStaleReads(h.Stale, rl)
	problems = append(problems, p...)
	problems = append(problems, checkRevisionMonotonic(probes)...)
	res, err := checkLinearizable(h.Ops, rl, finalRev, timeout, vizPath)
	if err != nil {
		problems = append(problems, fmt.Sprintf("visualization: %v", err))
	}
	switch res {
	case porcupine.Illegal:
		problems = append(problems, "linearizability: the KV history is not linearizable (visualization: "+vizPath+")")
	case porcupine.Unknown:
		problems = append(problems, fmt.Sprintf("linearizability: porcupine found no answer within %v (visualization: %s)", timeout, vizPath))
	}
	return res, problems, u1 + u2
}

// settle reads the last revision linearizably, waits until every member
// applied it and every watcher delivered it.
func settle(c *cluster, watchers []*watcher) (int64, error) {
	cli, err := newClient(c.endpoints())
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	var finalRev int64
	deadline := time.Now().Add(settleTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := cli.Get(ctx, "robustness-final")
		cancel()
		if err == nil {
			finalRev = r.Header.Revision
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no linearizable read within %v after the traffic: %v", settleTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range c.members {
		for {
			_, _, rev, err := m.status()
			if err == nil && rev >= finalRev {
				break
			}
			if time.Now().After(deadline) {
				return finalRev, fmt.Errorf("%s did not reach revision %d within %v: %v", m.name, finalRev, settleTimeout, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, w := range watchers {
		if !w.waitDelivered(finalRev, watchCatchUpTimeout) {
			return finalRev, fmt.Errorf("watcher of %s delivered only up to %d of %d within %v", w.m.name, w.delivered.Load(), finalRev, watchCatchUpTimeout)
		}
	}
	return finalRev, nil
}

// compareHashKV requires every member's HashKV at rev to be the same.
func compareHashKV(c *cluster, rev int64) error {
	var first string
	var firstHash uint32
	for _, m := range c.members {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.clientURL}, DialTimeout: 2 * time.Second})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := cli.HashKV(ctx, m.clientURL, rev)
		cancel()
		cli.Close()
		if err != nil {
			return fmt.Errorf("HashKV of %s at %d: %w", m.name, rev, err)
		}
		if first == "" {
			first, firstHash = m.name, r.Hash
		} else if r.Hash != firstHash {
			return fmt.Errorf("HashKV at %d: %s has %x, %s has %x", rev, first, firstHash, m.name, r.Hash)
		}
	}
	return nil
}
