package bench

import (
	"context"
	"fmt"
	"math/rand/v2"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// rangeScenario reads: point gets of uniformly random keys, or, with
// Options.PrefixPage > 0, a Kubernetes-style paginated list of the whole
// prefix: pages of PrefixPage keys, each continuing after the last key of
// the previous one at the revision of the first page, over and over.
// Options.Consistency selects linearizable or serializable reads.
type rangeScenario struct{ env *Env }

func (*rangeScenario) Name() string { return "range" }
func (*rangeScenario) Params(o *Options) []string {
	if o.PrefixPage > 0 {
		return []string{fmt.Sprintf("page=%d", o.PrefixPage), "consistency=" + o.Consistency}
	}
	return []string{"consistency=" + o.Consistency}
}
func (*rangeScenario) Classes() []string { return nil }

func (s *rangeScenario) Setup(ctx context.Context, env *Env) error {
	s.env = env
	if env.Opts.Prefill {
		return prefill(ctx, env)
	}
	return nil
}

func (s *rangeScenario) NewWorker(i int, cli *clientv3.Client) Worker {
	o := s.env.Opts
	w := &rangeWorker{kv: cli.KV, keys: s.env.Keys, rnd: newRand(i), page: int64(o.PrefixPage), end: prefixEnd(o.Prefix), prefix: o.Prefix}
	if o.Consistency == "s" {
		w.opts = append(w.opts, clientv3.WithSerializable())
	}
	return w
}

type rangeWorker struct {
	kv     clientv3.KV
	keys   *Keys
	rnd    *rand.Rand
	opts   []clientv3.OpOption // built once: no allocation per get
	prefix string
	end    string

	page int64  // 0 for point gets
	next string // the next page's first key; "" starts a new list
	rev  int64  // the list's revision, from its first page
}

func (w *rangeWorker) Do(ctx context.Context) (int, error) {
	if w.page == 0 {
		_, err := w.kv.Get(ctx, w.keys.Key(w.rnd.IntN(w.keys.Len())), w.opts...)
		return -1, err
	}
	return -1, w.listPage(ctx)
}

// listPage reads one page, as the Kubernetes apiserver's paginated list:
// limit, range to the prefix's end, and from the second page on the first
// page's revision and a start just after the previous page's last key.
func (w *rangeWorker) listPage(ctx context.Context) error {
	start, rev := w.next, w.rev
	if start == "" {
		start, rev = w.prefix, 0
	}
	opts := append(w.opts[:len(w.opts):len(w.opts)], clientv3.WithRange(w.end), clientv3.WithLimit(w.page), clientv3.WithRev(rev))
	resp, err := w.kv.Get(ctx, start, opts...)
	if err != nil {
		w.next = "" // start over, as a client would after an error
		return err
	}
	if !resp.More || len(resp.Kvs) == 0 {
		w.next = ""
		return nil
	}
	w.next = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	if rev == 0 {
		w.rev = resp.Header.Revision // pinned for the rest of the list
	}
	return nil
}
