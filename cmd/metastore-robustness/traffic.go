package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Traffic: clients that record every request, a compactor that compacts
// every 100-200 ms and defragments a member every few seconds.

const (
	// requestTimeout bounds one client request.
	requestTimeout = 2 * time.Second
	// failureBackoff is how long a client waits after a failed request, so
	// an unavailable cluster does not fill the history with open writes.
	failureBackoff = 200 * time.Millisecond
	// trafficClients is the number of concurrent recording clients.
	trafficClients = 6
	// trafficRateOpsPerS bounds the request rate of all clients together,
	// which keeps histories small enough to check in bounded time.
	trafficRateOpsPerS = 300
	// keyCount is the number of keys the traffic touches.
	keyCount = 10
	// listPageLimit is the page size of paginated lists.
	listPageLimit = 3
	// leaseTTLSeconds outlives any run: leases end by revoke, never expiry.
	leaseTTLSeconds = 600
	// compactIntervalMinMs and compactIntervalMaxMs bound the pause between
	// two compactions; compactLag is how far behind the newest revision a
	// compaction stays (so a watcher that is briefly behind is not cut off
	// every time).
	compactIntervalMinMs = 100
	compactIntervalMaxMs = 200
	compactLag           = time.Second
	// defragInterval is the pause between two defragmentations.
	defragInterval = 3 * time.Second
	// burstWriters and burstRevisions make the burst the compactMid fault
	// needs: more revisions than one compaction batch holds (mvcc's
	// DefaultCompactionBatchLimitRevs, 1000).
	burstWriters   = 8
	burstRevisions = 1100
)

type traffic struct {
	profile string
	prefix  string
	rec     *Recorder
	eps     []string

	lastRev      atomic.Int64 // the newest revision any response carried
	pauseCompact atomic.Bool
	compactions  atomic.Int64
	defrags      atomic.Int64
	seq          atomic.Int64 // for unique values
}

func newTraffic(profile string, rec *Recorder, eps []string) *traffic {
	t := &traffic{profile: profile, rec: rec, eps: eps, prefix: "/registry/pods/"}
	if profile == "etcd" {
		t.prefix = "key/"
	}
	return t
}

func (t *traffic) key(i int) string { return fmt.Sprintf("%sk%d", t.prefix, i) }

func (t *traffic) value(client int) string {
	return fmt.Sprintf("c%d-v%d", client, t.seq.Add(1))
}

func (t *traffic) sawRev(rev int64) {
	for {
		cur := t.lastRev.Load()
		if rev <= cur || t.lastRev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

func newClient(eps []string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
}

func kvsOf(r *pb.RangeResponse) []KV {
	var out []KV
	for _, kv := range r.Kvs {
		out = append(out, KV{Key: string(kv.Key), Value: string(kv.Value), ModRev: kv.ModRevision})
	}
	return out
}

// do runs one request, records it and returns the response.
func (t *traffic) do(ctx context.Context, cli *clientv3.Client, id int, req Request) Response {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	call := t.rec.now()
	resp, err := t.send(rctx, cli, req)
	ret := t.rec.now()
	if err != nil {
		if ctx.Err() != nil && req.Kind == opRange {
			return Response{Unknown: true} // the run ended: nothing to record
		}
		resp = Response{Unknown: true}
	} else {
		t.sawRev(resp.Rev)
	}
	t.rec.add(Op{Client: id, Req: req, Resp: resp, Call: call, Return: ret})
	return resp
}

func txnOps(ops []TxnOp) []clientv3.Op {
	var out []clientv3.Op
	for _, op := range ops {
		switch op.Kind {
		case opPut:
			if op.Lease != 0 {
				out = append(out, clientv3.OpPut(op.Key, op.Value, clientv3.WithLease(clientv3.LeaseID(op.Lease))))
			} else {
				out = append(out, clientv3.OpPut(op.Key, op.Value))
			}
		case opDelete:
			out = append(out, clientv3.OpDelete(op.Key))
		default:
			out = append(out, clientv3.OpGet(op.Key))
		}
	}
	return out
}

func (t *traffic) send(ctx context.Context, cli *clientv3.Client, req Request) (Response, error) {
	switch req.Kind {
	case opRange:
		opts := []clientv3.OpOption{clientv3.WithLimit(req.Limit)}
		if req.End != "" {
			opts = append(opts, clientv3.WithRange(req.End))
		}
		r, err := cli.Get(ctx, req.Key, opts...)
		if err != nil {
			return Response{}, err
		}
		return Response{Rev: r.Header.Revision, KVs: kvsOf((*pb.RangeResponse)(r)), Count: r.Count, More: r.More}, nil
	case opPut:
		var opts []clientv3.OpOption
		if req.Lease != 0 {
			opts = append(opts, clientv3.WithLease(clientv3.LeaseID(req.Lease)))
		}
		r, err := cli.Put(ctx, req.Key, req.Value, opts...)
		if err != nil {
			return Response{}, err
		}
		return Response{Rev: r.Header.Revision}, nil
	case opDelete:
		r, err := cli.Delete(ctx, req.Key)
		if err != nil {
			return Response{}, err
		}
		return Response{Rev: r.Header.Revision, Deleted: r.Deleted}, nil
	case opLeaseGrant:
		r, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: leaseTTLSeconds, ID: req.Lease})
		if err != nil {
			return Response{}, err
		}
		if r.Error != "" {
			return Response{}, fmt.Errorf("lease grant: %s", r.Error)
		}
		return Response{Rev: r.Header.Revision}, nil
	case opLeaseRevoke:
		r, err := cli.Revoke(ctx, clientv3.LeaseID(req.Lease))
		if err != nil {
			return Response{}, err
		}
		return Response{Rev: r.Header.Revision}, nil
	case opTxn:
		var cmps []clientv3.Cmp
		for _, c := range req.Conds {
			if c.ByValue {
				cmps = append(cmps, clientv3.Compare(clientv3.Value(c.Key), "=", c.Value))
			} else {
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(c.Key), "=", c.ModRev))
			}
		}
		r, err := cli.Txn(ctx).If(cmps...).Then(txnOps(req.Then)...).Else(txnOps(req.Else)...).Commit()
		if err != nil {
			return Response{}, err
		}
		out := Response{Rev: r.Header.Revision, Succeeded: r.Succeeded, Results: make([][]KV, len(r.Responses))}
		for i, op := range r.Responses {
			if rr := op.GetResponseRange(); rr != nil {
				out.Results[i] = kvsOf(rr)
			}
		}
		return out, nil
	}
	return Response{}, fmt.Errorf("unknown request kind %v", req.Kind)
}

// staleRange reads at a past revision and records the read if it succeeds.
func (t *traffic) staleRange(ctx context.Context, cli *clientv3.Client, id int, key, end string, limit, rev int64) (*clientv3.GetResponse, error) {
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithRev(rev), clientv3.WithLimit(limit)}
	if end != "" {
		opts = append(opts, clientv3.WithRange(end))
	}
	r, err := cli.Get(rctx, key, opts...)
	if err != nil {
		return nil, err
	}
	t.rec.addStale(StaleRead{Client: id, Key: key, End: end, Limit: limit, Rev: rev,
		KVs: kvsOf((*pb.RangeResponse)(r)), Count: r.Count, More: r.More})
	return r, nil
}

// runClient issues the profile's requests until ctx ends.
func (t *traffic) runClient(ctx context.Context, id int, rng *rand.Rand) error {
	cli, err := newClient(t.eps)
	if err != nil {
		return err
	}
	defer cli.Close()
	interval := time.Duration(trafficClients) * time.Second / trafficRateOpsPerS
	c := &clientState{id: id, modRevs: map[string]int64{}, values: map[string]string{}}
	for ctx.Err() == nil {
		var resp Response
		if t.profile == "etcd" {
			resp = t.etcdStep(ctx, cli, c, rng)
		} else {
			resp = t.k8sStep(ctx, cli, c, rng)
		}
		pause := interval
		if resp.Unknown {
			pause = failureBackoff
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
	return nil
}

// clientState is what one client remembers of the keys it has seen.
type clientState struct {
	id      int
	modRevs map[string]int64  // key -> mod revision last seen (0: absent)
	values  map[string]string // key -> value last seen
	lease   int64             // the client's live lease, 0 if none
	leases  int64             // leases granted so far
}

func (c *clientState) saw(kvs []KV, keys ...string) {
	for _, k := range keys {
		c.modRevs[k], c.values[k] = 0, ""
	}
	for _, kv := range kvs {
		c.modRevs[kv.Key], c.values[kv.Key] = kv.ModRev, kv.Value
	}
}

// k8sStep is one request of the Kubernetes-like profile: creates, updates
// and deletes guarded by mod_revision, consistent gets and paginated lists
// (the first page linearizable, the next ones at its revision).
func (t *traffic) k8sStep(ctx context.Context, cli *clientv3.Client, c *clientState, rng *rand.Rand) Response {
	k := t.key(rng.IntN(keyCount))
	switch p := rng.IntN(100); {
	case p < 40: // create or update
		v := t.value(c.id)
		req := Request{Kind: opTxn, Conds: []Cond{{Key: k, ModRev: c.modRevs[k]}},
			Then: []TxnOp{{Kind: opPut, Key: k, Value: v}}, Else: []TxnOp{{Kind: opRange, Key: k}}}
		resp := t.do(ctx, cli, c.id, req)
		if !resp.Unknown {
			if resp.Succeeded {
				c.modRevs[k], c.values[k] = resp.Rev, v
			} else {
				c.saw(resp.Results[0], k)
			}
		}
		return resp
	case p < 50: // delete
		req := Request{Kind: opTxn, Conds: []Cond{{Key: k, ModRev: c.modRevs[k]}},
			Then: []TxnOp{{Kind: opDelete, Key: k}}, Else: []TxnOp{{Kind: opRange, Key: k}}}
		resp := t.do(ctx, cli, c.id, req)
		if !resp.Unknown {
			if resp.Succeeded {
				c.modRevs[k] = 0
			} else {
				c.saw(resp.Results[0], k)
			}
		}
		return resp
	case p < 75: // paginated list
		end := clientv3.GetPrefixRangeEnd(t.prefix)
		resp := t.do(ctx, cli, c.id, Request{Kind: opRange, Key: t.prefix, End: end, Limit: listPageLimit})
		if resp.Unknown {
			return resp
		}
		kvs := resp.KVs
		more := resp.More
		for more && len(kvs) > 0 && ctx.Err() == nil {
			r, err := t.staleRange(ctx, cli, c.id, kvs[len(kvs)-1].Key+"\x00", end, listPageLimit, resp.Rev)
			if err != nil {
				break // compacted or unavailable: the lister starts over
			}
			kvs, more = kvsOf((*pb.RangeResponse)(r)), r.More
		}
		return resp
	default: // consistent get
		resp := t.do(ctx, cli, c.id, Request{Kind: opRange, Key: k})
		if !resp.Unknown {
			c.saw(resp.KVs, k)
		}
		return resp
	}
}

// etcdStep is one request of the etcd-like profile: gets, ranges, stale
// reads at a revision, puts, deletes, txns and lease put/revoke.
func (t *traffic) etcdStep(ctx context.Context, cli *clientv3.Client, c *clientState, rng *rand.Rand) Response {
	i := rng.IntN(keyCount)
	k := t.key(i)
	switch p := rng.IntN(100); {
	case p < 20:
		resp := t.do(ctx, cli, c.id, Request{Kind: opRange, Key: k})
		if !resp.Unknown {
			c.saw(resp.KVs, k)
		}
		return resp
	case p < 30:
		return t.do(ctx, cli, c.id, Request{Kind: opRange, Key: t.prefix, End: clientv3.GetPrefixRangeEnd(t.prefix), Limit: int64(1 + rng.IntN(keyCount))})
	case p < 40: // stale read at a recent revision
		rev := t.lastRev.Load() - int64(rng.IntN(20))
		if rev < 2 {
			rev = 2
		}
		if rng.IntN(2) == 0 {
			t.staleRange(ctx, cli, c.id, k, "", 0, rev)
		} else {
			t.staleRange(ctx, cli, c.id, t.prefix, clientv3.GetPrefixRangeEnd(t.prefix), int64(1+rng.IntN(keyCount)), rev)
		}
		return Response{}
	case p < 65:
		return t.do(ctx, cli, c.id, Request{Kind: opPut, Key: k, Value: t.value(c.id)})
	case p < 75:
		return t.do(ctx, cli, c.id, Request{Kind: opDelete, Key: k})
	case p < 88: // txn on three distinct keys
		k2, k3 := t.key((i+1)%keyCount), t.key((i+2)%keyCount)
		cond := Cond{Key: k, ModRev: c.modRevs[k]}
		if rng.IntN(2) == 0 && c.values[k] != "" {
			cond = Cond{Key: k, ByValue: true, Value: c.values[k]}
		}
		req := Request{Kind: opTxn, Conds: []Cond{cond},
			Then: []TxnOp{{Kind: opPut, Key: k2, Value: t.value(c.id)}, {Kind: opPut, Key: k3, Value: t.value(c.id)}},
			Else: []TxnOp{{Kind: opRange, Key: k}}}
		resp := t.do(ctx, cli, c.id, req)
		if !resp.Unknown && !resp.Succeeded {
			c.saw(resp.Results[0], k)
		}
		return resp
	default: // lease: grant, put with it, revoke
		switch {
		case c.lease == 0:
			c.leases++
			id := int64(c.id+1)<<32 | c.leases
			resp := t.do(ctx, cli, c.id, Request{Kind: opLeaseGrant, Lease: id})
			if !resp.Unknown {
				c.lease = id
			}
			return resp
		case rng.IntN(3) == 0:
			resp := t.do(ctx, cli, c.id, Request{Kind: opLeaseRevoke, Lease: c.lease})
			c.lease = 0 // revoked or unknown: a fresh lease next time
			return resp
		default:
			return t.do(ctx, cli, c.id, Request{Kind: opPut, Key: k, Value: t.value(c.id), Lease: c.lease})
		}
	}
}

// runCompactor compacts every 100-200 ms to the newest revision seen at
// least compactLag ago, and defragments a member every defragInterval.
func (t *traffic) runCompactor(ctx context.Context, rng *rand.Rand) error {
	cli, err := newClient(t.eps)
	if err != nil {
		return err
	}
	defer cli.Close()
	type sample struct {
		at  time.Time
		rev int64
	}
	var samples []sample
	lastDefrag := time.Now()
	for {
		d := time.Duration(compactIntervalMinMs+rng.IntN(compactIntervalMaxMs-compactIntervalMinMs+1)) * time.Millisecond
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
		now := time.Now()
		samples = append(samples, sample{now, t.lastRev.Load()})
		var target int64
		for len(samples) > 0 && now.Sub(samples[0].at) >= compactLag {
			target = samples[0].rev
			samples = samples[1:]
		}
		if target > 1 && !t.pauseCompact.Load() {
			cctx, cancel := context.WithTimeout(ctx, requestTimeout)
			t.rec.addCompaction(Compaction{Time: t.rec.now(), Rev: target})
			if _, err := cli.Compact(cctx, target); err == nil {
				t.compactions.Add(1)
			}
			cancel()
		}
		if now.Sub(lastDefrag) >= defragInterval {
			lastDefrag = now
			ep := t.eps[rng.IntN(len(t.eps))]
			cctx, cancel := context.WithTimeout(ctx, 2*requestTimeout)
			if _, err := cli.Defragment(cctx, ep); err == nil {
				t.defrags.Add(1)
			}
			cancel()
		}
	}
}

// burst writes burstRevisions puts as fast as burstWriters clients can,
// recorded like the rest of the traffic, through the endpoints eps.
func (t *traffic) burst(ctx context.Context, eps []string) error {
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(burstRevisions)
	errs := make(chan error, burstWriters)
	for w := 0; w < burstWriters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli, err := newClient(eps)
			if err != nil {
				errs <- err
				return
			}
			defer cli.Close()
			id := 1000 + w
			for left.Add(-1) >= 0 && ctx.Err() == nil {
				t.do(ctx, cli, id, Request{Kind: opPut, Key: t.prefix + "burst", Value: t.value(id)})
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
