package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watchers and probes: one watcher per member (the whole keyspace from
// revision 1, with prev_kv, asking for progress notifications), one prober
// per member reading its revision.

const (
	// progressInterval is the pause between two progress requests.
	progressInterval = 300 * time.Millisecond
	// probeInterval is the pause between two revision probes of a member.
	probeInterval = 100 * time.Millisecond
	// watchCatchUpTimeout bounds how long the watchers get, after the
	// traffic stopped, to deliver the run's last revision.
	watchCatchUpTimeout = 15 * time.Second
)

type watcher struct {
	m   *member
	rec *Recorder
	log *WatchLog
	mu  sync.Mutex // guards log.Responses
	// delivered is the newest revision the watcher has delivered (events
	// or progress).
	delivered atomic.Int64
}

func newWatcher(m *member, rec *Recorder) *watcher {
	return &watcher{m: m, rec: rec, log: &WatchLog{Member: m.name, StartRev: 1}}
}

func (w *watcher) add(r WatchResp) {
	w.mu.Lock()
	w.log.Responses = append(w.log.Responses, r)
	w.mu.Unlock()
}

// run watches until ctx ends. A compacted watch is re-opened at the
// compaction revision; clientv3 itself resumes a watch whose stream broke
// (a restarted member) from the revision after the last it delivered.
func (w *watcher) run(ctx context.Context) error {
	cli, err := w.m.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(progressInterval):
			}
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			cli.RequestProgress(pctx)
			cancel()
		}
	}()
	rev := int64(1)
	for ctx.Err() == nil {
		ch := cli.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithPrevKV())
		for resp := range ch {
			r := WatchResp{Time: w.rec.now(), HeaderRev: resp.Header.Revision}
			switch {
			case resp.CompactRevision != 0:
				r.Compacted = resp.CompactRevision
				rev = resp.CompactRevision
			case resp.IsProgressNotify():
				r.Progress = true
				w.bump(resp.Header.Revision)
			case resp.Err() != nil:
				r.Err = resp.Err().Error()
			}
			for _, e := range resp.Events {
				ev := Event{KV: KV{Key: string(e.Kv.Key), Value: string(e.Kv.Value), ModRev: e.Kv.ModRevision}}
				if e.Type == mvccpb.DELETE {
					ev.Type = EventDelete
				}
				if e.PrevKv != nil {
					ev.Prev = &KV{Key: string(e.PrevKv.Key), Value: string(e.PrevKv.Value), ModRev: e.PrevKv.ModRevision}
				}
				r.Events = append(r.Events, ev)
				rev = e.Kv.ModRevision + 1
				w.bump(e.Kv.ModRevision)
			}
			if len(r.Events) > 0 || r.Progress || r.Compacted != 0 || r.Err != "" {
				w.add(r)
			}
		}
	}
	return nil
}

func (w *watcher) bump(rev int64) {
	for {
		cur := w.delivered.Load()
		if rev <= cur || w.delivered.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// waitDelivered waits until the watcher delivered rev.
func (w *watcher) waitDelivered(rev int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for w.delivered.Load() < rev {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// prober records a member's revision (serializable reads of the member
// alone) every probeInterval.
type prober struct {
	m      *member
	rec    *Recorder
	gen    *atomic.Int32 // the member's replacement generation
	mu     sync.Mutex
	probes []Probe
}

func (p *prober) run(ctx context.Context) error {
	cli, err := p.m.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(probeInterval):
		}
		gen := p.gen.Load()
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		r, err := cli.Get(rctx, "robustness-probe", clientv3.WithSerializable())
		cancel()
		if err != nil || gen != p.gen.Load() {
			continue
		}
		p.mu.Lock()
		p.probes = append(p.probes, Probe{Member: p.m.name, Gen: int(gen), Time: p.rec.now(), Rev: r.Header.Revision})
		p.mu.Unlock()
	}
}
