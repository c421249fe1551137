package bench

import (
	"context"
	"math/rand/v2"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// putScenario puts the shared value under uniformly random keys of the key
// space: the write path (raft, WAL fsync, engine) under concurrency.
type putScenario struct{ env *Env }

func (*putScenario) Name() string             { return "put" }
func (*putScenario) Params(*Options) []string { return nil }
func (*putScenario) Classes() []string        { return nil }
func (s *putScenario) Setup(_ context.Context, env *Env) error {
	s.env = env
	return nil
}

func (s *putScenario) NewWorker(i int, cli *clientv3.Client) Worker {
	return &putWorker{kv: cli.KV, keys: s.env.Keys, value: s.env.Value, rnd: newRand(i)}
}

type putWorker struct {
	kv    clientv3.KV
	keys  *Keys
	value string
	rnd   *rand.Rand
}

func (w *putWorker) Do(ctx context.Context) (int, error) {
	_, err := w.kv.Put(ctx, w.keys.Key(w.rnd.IntN(w.keys.Len())), w.value)
	return -1, err
}

// newRand returns worker i's generator: seeded, so runs repeat.
func newRand(i int) *rand.Rand { return rand.New(rand.NewPCG(uint64(i), 0x6d657461)) }
