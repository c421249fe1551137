package bench

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// loadScenario writes Options.LoadKeys keys (key i for i in [0, LoadKeys))
// as fast as it can, for scale tests: workers take batches of
// Options.TxnOps keys from a shared counter and write each batch in one
// transaction (or one put if TxnOps is 1). The run ends when every batch
// is written, whatever Options.Duration says; an operation is a batch.
type loadScenario struct {
	env      *Env
	nkeys    int64
	nbatches int64
	next     atomic.Int64 // the next batch to write
	written  *atomic.Int64
}

func (*loadScenario) Name() string { return "load" }
func (*loadScenario) Params(o *Options) []string {
	return []string{fmt.Sprintf("keys=%d", o.loadKeys()), fmt.Sprintf("txn-ops=%d", o.TxnOps)}
}
func (*loadScenario) Classes() []string      { return nil }
func (*loadScenario) runsToCompletion() bool { return true }
func (s *loadScenario) progressTotal() int64 { return s.nbatches }

// loadKeys is LoadKeys, defaulting to the key space.
func (o *Options) loadKeys() int64 {
	if o.LoadKeys > 0 {
		return o.LoadKeys
	}
	return int64(o.KeySpace)
}

func (s *loadScenario) Setup(_ context.Context, env *Env) error {
	s.env = env
	s.nkeys = env.Opts.loadKeys()
	s.nbatches = (s.nkeys + int64(env.Opts.TxnOps) - 1) / int64(env.Opts.TxnOps)
	s.written = env.Counter("keys")
	return nil
}

func (s *loadScenario) NewWorker(_ int, cli *clientv3.Client) Worker {
	return &loadWorker{s: s, kv: cli.KV, ops: make([]clientv3.Op, 0, s.env.Opts.TxnOps)}
}

func (s *loadScenario) extraMetrics(r *Result) []Metric {
	if r.ElapsedSec <= 0 {
		return nil
	}
	return []Metric{{Value: math.Round(float64(r.Counters["keys"])/r.ElapsedSec*10) / 10, Unit: "keys/s"}}
}

type loadWorker struct {
	s   *loadScenario
	kv  clientv3.KV
	buf []byte
	ops []clientv3.Op
}

func (w *loadWorker) Do(ctx context.Context) (int, error) {
	b := w.s.next.Add(1) - 1
	if b >= w.s.nbatches {
		return -1, ErrDone
	}
	o := w.s.env.Opts
	lo := b * int64(o.TxnOps)
	hi := min(lo+int64(o.TxnOps), w.s.nkeys)
	w.ops = w.ops[:0]
	for i := lo; i < hi; i++ {
		w.buf = appendKey(w.buf[:0], o.Prefix, o.KeySize, uint64(i))
		w.ops = append(w.ops, clientv3.OpPut(string(w.buf), w.s.env.Value))
	}
	if err := writeBatch(ctx, w.kv, w.ops); err != nil {
		return -1, err
	}
	w.s.written.Add(hi - lo)
	return -1, nil
}

// writeBatch writes ops in one transaction, or as one request if there is
// only one.
func writeBatch(ctx context.Context, kv clientv3.KV, ops []clientv3.Op) error {
	if len(ops) == 1 {
		_, err := kv.Do(ctx, ops[0])
		return err
	}
	_, err := kv.Txn(ctx).Then(ops...).Commit()
	return err
}

// Prefill bounds: goroutines writing the key space before the clock
// starts, and attempts per batch.
const (
	prefillConcurrency = 16
	prefillAttempts    = 3
)

// prefill writes every key of env.Keys with env.Value, in transactions of
// Options.TxnOps puts, before the clock starts.
func prefill(ctx context.Context, env *Env) error {
	o := env.Opts
	n := env.Keys.Len()
	batches := (n + o.TxnOps - 1) / o.TxnOps
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, prefillConcurrency)
	for g := range prefillConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kv := env.Clients[g%len(env.Clients)].KV
			ops := make([]clientv3.Op, 0, o.TxnOps)
			for {
				b := int(next.Add(1) - 1)
				if b >= batches {
					return
				}
				ops = ops[:0]
				for i := b * o.TxnOps; i < min((b+1)*o.TxnOps, n); i++ {
					ops = append(ops, clientv3.OpPut(env.Keys.Key(i), env.Value))
				}
				var err error
				for range prefillAttempts {
					if err = writeBatch(ctx, kv, ops); err == nil {
						break
					}
				}
				if err != nil {
					errs[g] = fmt.Errorf("bench: prefill: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
