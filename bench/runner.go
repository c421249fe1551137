package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// runsToCompletion is implemented by scenarios that end when their work
// is done (load), whatever Options.Duration and Options.Total say.
type runsToCompletion interface {
	runsToCompletion() bool
}

// progressTotal is implemented by scenarios that know how many operations
// they will run (load), for the progress bar.
type progressTotal interface {
	progressTotal() int64
}

// defaultTotalPprofSeconds is the profiles' length when a run is bounded
// by operations rather than time.
const defaultTotalPprofSeconds = 10

// Run runs sc with o against o.Endpoints and returns its result; it writes
// the result file and profiles in o.OutDir when that is set. Cancelling
// ctx ends the run early: the result covers what ran.
func Run(ctx context.Context, sc Scenario, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	clients, err := dial(ctx, &o)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()

	if o.PprofURL != "" { // Validate made sure OutDir is set
		if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
			return nil, err
		}
	}
	col := newCollector(0, len(sc.Classes()))
	env := &Env{Opts: &o, Clients: clients, Keys: NewKeys(o.Prefix, o.KeySize, o.KeySpace),
		Value: newValue(o.ValSize), col: col, counters: map[string]*atomic.Int64{}}
	if err := sc.Setup(ctx, env); err != nil {
		return nil, fmt.Errorf("bench: %s setup: %w", sc.Name(), err)
	}
	untimed := false
	if rc, ok := sc.(runsToCompletion); ok {
		untimed = rc.runsToCompletion()
	}
	recordMain := true
	if mr, ok := sc.(mainRecorder); ok {
		recordMain = mr.workersRecordMain()
	}
	workers := make([]Worker, o.Clients)
	for i := range workers {
		workers[i] = sc.NewWorker(i, clients[i%len(clients)])
	}

	res := &Result{Name: benchName(sc, &o), Scenario: sc.Name(), Target: o.TargetName, Command: o.Command,
		Options: o, Host: thisHost()}
	var prof *profiler
	if o.PprofURL != "" {
		secs := o.PprofSeconds
		if secs == 0 {
			secs = int(math.Ceil(o.Duration.Seconds()))
			if o.Total > 0 || untimed {
				secs = defaultTotalPprofSeconds
			}
		}
		res.Start = time.Now() // for the profiles' file names
		prof = startProfiler(ctx, o.PprofURL, o.OutDir, res.FileStem(), max(secs, 1))
	}

	// Time-bounded runs stop at the deadline and let requests in flight
	// finish within RequestTimeout; operation-bounded runs bound each
	// request instead.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	timed := !untimed && o.Total == 0
	perRequestTimeout := time.Duration(0)
	if !timed {
		perRequestTimeout = o.RequestTimeout
	}
	var stop atomic.Bool
	var issued atomic.Int64
	total := o.Total
	if untimed {
		total = 0
	}
	lim := NewLimiter(o.Rate)

	start := time.Now()
	if res.Start.IsZero() {
		res.Start = start
	}
	col.startClock(start)
	bgCtx, cancelBg := context.WithCancel(runCtx)
	var bgWG sync.WaitGroup
	for _, f := range env.bg {
		bgWG.Add(1)
		go func() {
			defer bgWG.Done()
			f(bgCtx)
		}()
	}
	var workersWG sync.WaitGroup
	done := make(chan struct{})
	for i, w := range workers {
		workersWG.Add(1)
		go func() {
			defer workersWG.Done()
			runWorker(runCtx, w, col.recorder(i), workerLimits{lim: lim, stop: &stop, issued: &issued, total: total,
				recordMain: recordMain, requestTimeout: perRequestTimeout})
		}()
	}
	go func() {
		workersWG.Wait()
		close(done)
	}()

	prog := &progress{w: o.Progress, bar: o.ProgressBar, label: sc.Name() + " " + o.TargetName, total: total}
	if pt, ok := sc.(progressTotal); ok {
		prog.total = pt.progressTotal()
	}
	var deadline <-chan time.Time
	if timed {
		prog.dur = o.Duration
		deadline = time.After(o.Duration)
	}
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	var hardStop <-chan time.Time
loop:
	for {
		select {
		case now := <-tick.C:
			prog.update(now.Sub(start), col.flush(now))
		case <-deadline:
			stop.Store(true)
			deadline = nil
			hardStop = time.After(o.RequestTimeout)
		case <-hardStop:
			cancelRun() // requests in flight past RequestTimeout: give up on them
		case <-done:
			break loop
		case <-ctx.Done():
			stop.Store(true)
			cancelRun()
			<-done
			break loop
		}
	}
	cancelBg()
	bgWG.Wait()
	if d, ok := sc.(drainer); ok {
		if err := d.Drain(ctx, env); err != nil {
			return nil, fmt.Errorf("bench: %s drain: %w", sc.Name(), err)
		}
	}
	end := time.Now()
	col.flush(end) // the last, partial interval: in the timeline, not in the progress report
	prog.finish()

	res.ElapsedSec = end.Sub(start).Seconds()
	res.Ops = col.total.TotalCount()
	res.Errors = col.errors
	res.Latency = summarize(col.total)
	if res.ElapsedSec > 0 {
		res.OpsPerSec = float64(res.Ops) / res.ElapsedSec
	}
	res.Classes = col.classSummaries(sc.Classes())
	res.Timeline = col.timeline
	res.ErrorMsgs = sortedErrorMsgs(col.errorMsgs)
	if len(env.counters) > 0 {
		res.Counters = make(map[string]int64, len(env.counters))
		for name, c := range env.counters {
			res.Counters[name] = c.Load()
		}
	}
	if em, ok := sc.(extraMetrics); ok {
		res.Extra = em.extraMetrics(res)
	}
	var profErr error
	if prof != nil {
		res.Profiles, profErr = prof.finish(context.Background())
	}
	if o.OutDir != "" {
		if _, err := res.WriteFile(o.OutDir); err != nil {
			return res, fmt.Errorf("bench: writing result: %w", err)
		}
	}
	return res, profErr
}

// workerLimits are what a worker checks before each operation.
type workerLimits struct {
	lim            *Limiter
	stop           *atomic.Bool
	issued         *atomic.Int64 // operations started, when total > 0
	total          int64
	recordMain     bool
	requestTimeout time.Duration // 0: none per request
}

// runWorker calls w.Do until the run stops, timing each call.
func runWorker(ctx context.Context, w Worker, rec *Recorder, l workerLimits) {
	for !l.stop.Load() {
		if l.total > 0 && l.issued.Add(1) > l.total {
			return
		}
		if l.lim.Wait(ctx) != nil || l.stop.Load() {
			return
		}
		opCtx, cancel := ctx, context.CancelFunc(nil)
		if l.requestTimeout > 0 {
			opCtx, cancel = context.WithTimeout(ctx, l.requestTimeout)
		}
		t0 := time.Now()
		class, err := w.Do(opCtx)
		ns := int64(time.Since(t0))
		if cancel != nil {
			cancel()
		}
		switch {
		case errors.Is(err, ErrDone):
			return
		case err != nil && ctx.Err() != nil:
			return // the run was cut short: not the server's failure
		case err != nil:
			rec.Error(err)
			continue
		}
		rec.recordBoth(l.recordMain, class, ns)
	}
}

// dial opens o.Conns connections.
func dial(ctx context.Context, o *Options) ([]*clientv3.Client, error) {
	clients := make([]*clientv3.Client, 0, o.Conns)
	for range o.Conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:            o.Endpoints,
			DialTimeout:          o.DialTimeout,
			DialKeepAliveTime:    30 * time.Second,
			MaxCallSendMsgSize:   16 << 20,
			MaxCallRecvMsgSize:   math.MaxInt32,
			Logger:               zap.NewNop(),
			Context:              ctx,
			PermitWithoutStream:  true,
			DialKeepAliveTimeout: 10 * time.Second,
		})
		if err != nil {
			for _, c := range clients {
				c.Close()
			}
			return nil, fmt.Errorf("bench: connecting to %v: %w", o.Endpoints, err)
		}
		clients = append(clients, c)
	}
	return clients, nil
}
