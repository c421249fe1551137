package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// compactionScenario is the put load of put while a compactor compacts,
// every Options.CompactInterval, to the current revision minus
// Options.CompactRetention, and waits for the compaction to be physically
// done. A put that overlapped a compaction (began during one, or ended
// after one began) counts in the class "during-compaction", the others in
// "outside-compaction"; "compact" is the compactions' own latency. Grow a
// large history first with load, or a long run with a large retention.
type compactionScenario struct {
	env *Env
	// epoch counts compaction starts and ends: odd while one runs. A put
	// that reads the same even epoch before and after ran outside.
	epoch       atomic.Int64
	compactions *atomic.Int64
	skipped     *atomic.Int64
	unfinished  *atomic.Int64 // cut short by the end of the run
}

// Classes of compaction.
const (
	compactDuring = iota
	compactOutside
	compactCompact
)

func (*compactionScenario) Name() string { return "compaction" }
func (*compactionScenario) Params(o *Options) []string {
	return []string{fmt.Sprintf("retention=%d", o.CompactRetention), fmt.Sprintf("interval=%v", o.CompactInterval)}
}
func (*compactionScenario) Classes() []string {
	return []string{"during-compaction", "outside-compaction", "compact"}
}

func (s *compactionScenario) Setup(_ context.Context, env *Env) error {
	s.env = env
	s.compactions = env.Counter("compactions")
	s.skipped = env.Counter("compactions_skipped")
	s.unfinished = env.Counter("compactions_unfinished")
	rec := env.Recorder(0)
	cli := env.Clients[0]
	env.Go(func(ctx context.Context) { s.compactor(ctx, cli, rec) })
	return nil
}

// compactor compacts every interval until ctx is done. It learns the
// current revision from a get, and skips a round when the retention
// leaves nothing new to compact.
func (s *compactionScenario) compactor(ctx context.Context, cli *clientv3.Client, rec *Recorder) {
	o := s.env.Opts
	t := time.NewTicker(o.CompactInterval)
	defer t.Stop()
	var compacted int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		resp, err := cli.Get(ctx, o.Prefix, clientv3.WithCountOnly())
		if err != nil {
			if ctx.Err() == nil {
				rec.Error(err)
			}
			continue
		}
		rev := resp.Header.Revision - o.CompactRetention
		if rev <= compacted {
			s.skipped.Add(1)
			continue
		}
		s.epoch.Add(1)
		start := time.Now()
		_, err = cli.Compact(ctx, rev, clientv3.WithCompactPhysical())
		s.epoch.Add(1)
		if err != nil {
			if ctx.Err() != nil {
				s.unfinished.Add(1)
				return
			}
			rec.Error(err)
			continue
		}
		rec.RecordClass(compactCompact, int64(time.Since(start)))
		compacted = rev
		s.compactions.Add(1)
	}
}

func (s *compactionScenario) NewWorker(i int, cli *clientv3.Client) Worker {
	return &compactionWorker{s: s, kv: cli.KV, rnd: newRand(i)}
}

func (s *compactionScenario) extraMetrics(r *Result) []Metric {
	return []Metric{
		{Value: float64(r.Classes["during-compaction"].P99Ns), Unit: "p99-during-compact-ns"},
		{Value: float64(r.Classes["outside-compaction"].P99Ns), Unit: "p99-outside-compact-ns"},
	}
}

type compactionWorker struct {
	s   *compactionScenario
	kv  clientv3.KV
	rnd *rand.Rand
}

func (w *compactionWorker) Do(ctx context.Context) (int, error) {
	keys := w.s.env.Keys
	before := w.s.epoch.Load()
	_, err := w.kv.Put(ctx, keys.Key(w.rnd.IntN(keys.Len())), w.s.env.Value)
	if before%2 == 1 || w.s.epoch.Load() != before {
		return compactDuring, err
	}
	return compactOutside, err
}
