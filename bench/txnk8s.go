package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
)

// k8sScenario sends what the Kubernetes apiserver sends, through the same
// go.etcd.io/etcd/client/v3/kubernetes calls: creates, updates and
// deletes as transactions guarded by a compare on mod_revision
// (OptimisticPut, OptimisticDelete, with a get on failure), linearizable
// gets, and paginated lists.
//
// The workers share a "watch cache": the last mod_revision each worker saw
// per key (0: absent). An update is the apiserver's GuaranteedUpdate: put
// if mod_revision is still the cached one; on conflict, take the current
// object from the failed transaction's get and try again, at most
// maxUpdateAttempts times. One operation is the whole update, conflicts
// included; its class says which kind it was.
type k8sScenario struct {
	env    *Env
	mix    k8sMix
	modRev []atomic.Int64 // the shared cache, by key index

	conflicts, exists, notFound *atomic.Int64
}

// The operations of txn-k8s, in the order of their classes.
const (
	k8sCreate = iota
	k8sUpdate
	k8sDelete
	k8sGet
	k8sList
	k8sNumOps
)

var k8sOpNames = [k8sNumOps]string{"create", "update", "delete", "get", "list"}

const defaultTxnMix = "create=10,update=60,delete=10,get=15,list=5"

// maxUpdateAttempts bounds a GuaranteedUpdate's retries after conflicts
// (the apiserver's loop is unbounded); maxKeyPicks bounds the random picks
// looking for a key cached as present (update, delete) or absent (create).
const (
	maxUpdateAttempts = 8
	maxKeyPicks       = 8
	defaultK8sPage    = 500
)

// ErrTooManyConflicts is returned by an update that lost the race
// maxUpdateAttempts times.
var ErrTooManyConflicts = errors.New("bench: txn-k8s: too many conflicts")

// k8sMix holds cumulative weights: op i is chosen when a draw in
// [0, total) is below cum[i].
type k8sMix struct {
	cum   [k8sNumOps]int
	total int
}

// parseTxnMix parses "create=10,update=60,...": every operation named at
// most once, weights >= 0, at least one positive; missing ones weigh 0.
func parseTxnMix(s string) (k8sMix, error) {
	var w [k8sNumOps]int
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(val)
		i := indexOf(k8sOpNames[:], name)
		if !ok || err != nil || n < 0 || i < 0 || seen[name] {
			return k8sMix{}, fmt.Errorf("bench: txn-mix %q: bad part %q (want op=weight, op one of %s)", s, part, strings.Join(k8sOpNames[:], ", "))
		}
		seen[name] = true
		w[i] = n
	}
	var m k8sMix
	for i, n := range w {
		m.total += n
		m.cum[i] = m.total
	}
	if m.total == 0 {
		return k8sMix{}, fmt.Errorf("bench: txn-mix %q: all weights are 0", s)
	}
	return m, nil
}

func (m *k8sMix) pick(r *rand.Rand) int {
	d := r.IntN(m.total)
	for i, c := range m.cum {
		if d < c {
			return i
		}
	}
	panic("unreachable: d < total = cum[last]")
}

func indexOf(names []string, s string) int {
	for i, n := range names {
		if n == s {
			return i
		}
	}
	return -1
}

func (*k8sScenario) Name() string             { return "txn-k8s" }
func (*k8sScenario) Params(*Options) []string { return nil }
func (*k8sScenario) Classes() []string        { return k8sOpNames[:] }

func (s *k8sScenario) Setup(ctx context.Context, env *Env) error {
	s.env = env
	var err error
	if s.mix, err = parseTxnMix(env.Opts.TxnMix); err != nil {
		return err
	}
	s.modRev = make([]atomic.Int64, env.Keys.Len())
	s.conflicts = env.Counter("conflicts")
	s.exists = env.Counter("create_exists")
	s.notFound = env.Counter("not_found")
	if !env.Opts.Prefill {
		return nil
	}
	if err := prefill(ctx, env); err != nil {
		return err
	}
	for i := range s.modRev {
		s.modRev[i].Store(-1) // present, revision unknown: the first update gets it
	}
	return nil
}

func (s *k8sScenario) NewWorker(i int, cli *clientv3.Client) Worker {
	page := int64(s.env.Opts.PrefixPage)
	if page == 0 {
		page = defaultK8sPage
	}
	return &k8sWorker{s: s, kc: kubernetes.Client{Client: cli}, rnd: newRand(i), value: []byte(s.env.Value), page: page}
}

type k8sWorker struct {
	s     *k8sScenario
	kc    kubernetes.Client
	rnd   *rand.Rand
	value []byte
	page  int64
}

func (w *k8sWorker) Do(ctx context.Context) (int, error) {
	op := w.s.mix.pick(w.rnd)
	switch op {
	case k8sCreate:
		i, ok := w.pickKey(false)
		if !ok {
			return k8sUpdate, w.update(ctx, i)
		}
		return op, w.create(ctx, i)
	case k8sUpdate, k8sDelete:
		i, ok := w.pickKey(true)
		if !ok {
			return k8sCreate, w.create(ctx, i)
		}
		if op == k8sUpdate {
			return op, w.update(ctx, i)
		}
		return op, w.delete(ctx, i)
	case k8sGet:
		i := w.rnd.IntN(len(w.s.modRev))
		resp, err := w.kc.Get(ctx, w.s.env.Keys.Key(i), kubernetes.GetOptions{})
		if err == nil {
			w.s.modRev[i].Store(modRevOf(resp.KV))
		}
		return op, err
	default: // k8sList: one page from a random key
		start := w.s.env.Keys.Key(w.rnd.IntN(len(w.s.modRev)))
		_, err := w.kc.List(ctx, w.s.env.Opts.Prefix, kubernetes.ListOptions{Limit: w.page, Continue: start})
		return op, err
	}
}

// pickKey picks a random key cached as present (or absent); ok is false if
// maxKeyPicks picks found none, and i is then a key of the other kind.
func (w *k8sWorker) pickKey(present bool) (i int, ok bool) {
	for range maxKeyPicks {
		i = w.rnd.IntN(len(w.s.modRev))
		if (w.s.modRev[i].Load() != 0) == present {
			return i, true
		}
	}
	return i, false
}

func (w *k8sWorker) create(ctx context.Context, i int) error {
	resp, err := w.kc.OptimisticPut(ctx, w.s.env.Keys.Key(i), w.value, 0, kubernetes.PutOptions{GetOnFailure: true})
	if err != nil {
		return err
	}
	if resp.Succeeded {
		w.s.modRev[i].Store(resp.Revision)
		return nil
	}
	w.s.exists.Add(1) // the apiserver's AlreadyExists
	w.s.modRev[i].Store(modRevOf(resp.KV))
	return nil
}

// cachedRev is key i's cached mod_revision; a cached -1 (present,
// revision unknown, after a prefill) costs a get.
func (w *k8sWorker) cachedRev(ctx context.Context, i int) (int64, error) {
	rev := w.s.modRev[i].Load()
	if rev >= 0 {
		return rev, nil
	}
	resp, err := w.kc.Get(ctx, w.s.env.Keys.Key(i), kubernetes.GetOptions{})
	return modRevOf(resp.KV), err
}

// update is GuaranteedUpdate with the shared cache as the apiserver's
// watch cache: a put guarded by the cached revision.
func (w *k8sWorker) update(ctx context.Context, i int) error {
	return w.guarded(ctx, i, func(key string, rev int64) (bool, int64, *mvccpb.KeyValue, error) {
		resp, err := w.kc.OptimisticPut(ctx, key, w.value, rev, kubernetes.PutOptions{GetOnFailure: true})
		return resp.Succeeded, resp.Revision, resp.KV, err
	})
}

// delete is the apiserver's Delete: a delete guarded by the cached
// revision.
func (w *k8sWorker) delete(ctx context.Context, i int) error {
	return w.guarded(ctx, i, func(key string, rev int64) (bool, int64, *mvccpb.KeyValue, error) {
		resp, err := w.kc.OptimisticDelete(ctx, key, rev, kubernetes.DeleteOptions{GetOnFailure: true})
		return resp.Succeeded, 0, resp.KV, err
	})
}

// guarded runs txn, a transaction on key i guarded by mod_revision = rev
// that reads the key when the guard fails, from the cached revision and
// then, after each conflict, from the revision the failed transaction
// read, at most maxUpdateAttempts times. On success the cache takes
// cacheRev (the put's revision; 0 for a delete). A key found absent ends
// it as the apiserver's NotFound.
func (w *k8sWorker) guarded(ctx context.Context, i int,
	txn func(key string, rev int64) (ok bool, cacheRev int64, cur *mvccpb.KeyValue, err error)) error {
	key := w.s.env.Keys.Key(i)
	rev, err := w.cachedRev(ctx, i)
	if err != nil {
		return err
	}
	for range maxUpdateAttempts {
		if rev == 0 {
			w.s.notFound.Add(1)
			w.s.modRev[i].Store(0)
			return nil
		}
		ok, cacheRev, cur, err := txn(key, rev)
		if err != nil {
			return err
		}
		if ok {
			w.s.modRev[i].Store(cacheRev)
			return nil
		}
		w.s.conflicts.Add(1)
		rev = modRevOf(cur)
	}
	w.s.modRev[i].Store(rev)
	return ErrTooManyConflicts
}

// modRevOf is kv's mod_revision, 0 if kv is nil (absent).
func modRevOf(kv *mvccpb.KeyValue) int64 {
	if kv == nil {
		return 0
	}
	return kv.ModRevision
}
