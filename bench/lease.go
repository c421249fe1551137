package bench

import (
	"context"
	"fmt"
	"math/rand/v2"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseScenario churns leases: each worker grants a lease of
// Options.LeaseTTL, puts Options.LeaseKeys keys attached to it, sends
// Options.LeaseKeepalives keep-alives and revokes it (deleting the keys),
// over and over. An operation is one request; its class says which.
type leaseScenario struct{ env *Env }

// Classes of lease, in the order of a lease's life.
const (
	leaseGrant = iota
	leasePut
	leaseKeepalive
	leaseRevoke
)

func (*leaseScenario) Name() string { return "lease" }
func (*leaseScenario) Params(o *Options) []string {
	return []string{fmt.Sprintf("keys=%d", o.LeaseKeys), fmt.Sprintf("keepalives=%d", o.LeaseKeepalives)}
}
func (*leaseScenario) Classes() []string { return []string{"grant", "put", "keepalive", "revoke"} }

func (s *leaseScenario) Setup(_ context.Context, env *Env) error {
	s.env = env
	return nil
}

func (s *leaseScenario) NewWorker(i int, cli *clientv3.Client) Worker {
	return &leaseWorker{s: s, cli: cli, rnd: newRand(i), ttlSec: int64(s.env.Opts.LeaseTTL.Seconds())}
}

// leaseWorker walks one lease at a time through grant, LeaseKeys puts,
// LeaseKeepalives keep-alives and revoke; step counts the requests sent
// for the current lease.
type leaseWorker struct {
	s      *leaseScenario
	cli    *clientv3.Client
	rnd    *rand.Rand
	ttlSec int64
	id     clientv3.LeaseID // 0: none granted
	step   int
}

func (w *leaseWorker) Do(ctx context.Context) (int, error) {
	o := w.s.env.Opts
	if w.id == 0 {
		resp, err := w.cli.Grant(ctx, w.ttlSec)
		if err != nil {
			return leaseGrant, err
		}
		w.id, w.step = resp.ID, 0
		return leaseGrant, nil
	}
	w.step++
	switch {
	case w.step <= o.LeaseKeys:
		key := w.s.env.Keys.Key(w.rnd.IntN(w.s.env.Keys.Len()))
		_, err := w.cli.Put(ctx, key, w.s.env.Value, clientv3.WithLease(w.id))
		return leasePut, w.dropLeaseOn(err)
	case w.step <= o.LeaseKeys+o.LeaseKeepalives:
		_, err := w.cli.KeepAliveOnce(ctx, w.id)
		return leaseKeepalive, w.dropLeaseOn(err)
	default:
		_, err := w.cli.Revoke(ctx, w.id)
		w.id = 0 // revoked, or lost to the error: start a new lease either way
		return leaseRevoke, err
	}
}

// dropLeaseOn forgets the lease after an error (it may have expired), so
// that the next operation grants a new one.
func (w *leaseWorker) dropLeaseOn(err error) error {
	if err != nil {
		w.id = 0
	}
	return err
}
