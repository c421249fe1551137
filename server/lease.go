package server

import (
	"context"
	"errors"
	"io"
	"math"
	"sort"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/metastore/metastore/mvcc"
)

// maxLeaseTTLSeconds is etcd's MaxLeaseTTL (about 285 years).
const maxLeaseTTLSeconds = 9_000_000_000

// maxLeaseRevokesPerCheck bounds how many expired leases the leader revokes
// per LeaseCheckInterval, as etcd's leaseRevokeRate bounds it, so a mass
// expiry does not flood raft.
const maxLeaseRevokesPerCheck = 500

// maxCheckpointsPerRequest bounds one LeaseCheckpoint proposal.
const maxCheckpointsPerRequest = 1000

// lessor keeps lease deadlines. Leases themselves (ID, TTL, attached keys,
// checkpointed remaining TTL) are replicated state in mvcc; deadlines are
// local to the leader, as in etcd: KeepAlive refreshes them without raft,
// and only the leader revokes expired leases, through raft. Remaining TTLs
// are checkpointed through raft every LeaseCheckpointInterval so a new
// leader resumes from them instead of resetting every lease to its full
// TTL (etcd #9395, #13294).
type lessor struct {
	s      *Server
	minTTL int64 // seconds; shorter grants are raised to it, as etcd

	mu struct {
		sync.Mutex
		leader    bool
		deadlines map[int64]time.Time // leader only
	}
}

func newLessor(s *Server) *lessor {
	l := &lessor{s: s}
	// etcd: a lease must outlive an election, so the minimum TTL is 1.5
	// election timeouts, rounded up to whole seconds.
	minTTL := time.Duration(3*s.cfg.ElectionTimeout) / 2
	l.minTTL = int64(math.Ceil(minTTL.Seconds()))
	l.mu.deadlines = map[int64]time.Time{}
	return l
}

// run tracks leadership and, on the leader, expires and checkpoints leases.
func (l *lessor) run(ctx context.Context) {
	check := time.NewTicker(l.s.cfg.LeaseCheckInterval)
	defer check.Stop()
	checkpoint := time.NewTicker(l.s.cfg.LeaseCheckpointInterval)
	defer checkpoint.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			l.syncLeadership()
			l.revokeExpired(ctx)
		case <-checkpoint.C:
			l.checkpoint(ctx)
		}
	}
}

// syncLeadership promotes or demotes the lessor when leadership changed.
func (l *lessor) syncLeadership() {
	isLeader := l.s.node.IsLeader()
	l.mu.Lock()
	defer l.mu.Unlock()
	if isLeader == l.mu.leader {
		return
	}
	l.mu.leader = isLeader
	clear(l.mu.deadlines)
	if !isLeader {
		return
	}
	// Promote: every lease gets its checkpointed remaining TTL (or its full
	// TTL) from now, extended by an election timeout to cover the time the
	// old leader may have been unreachable, as etcd does.
	now := time.Now().Add(l.s.cfg.ElectionTimeout)
	for _, ls := range l.s.kv.Leases() {
		l.mu.deadlines[ls.ID] = now.Add(time.Duration(remainingOrTTL(ls)) * time.Second)
	}
}

func remainingOrTTL(ls mvcc.Lease) int64 {
	if ls.RemainingTTL > 0 {
		return ls.RemainingTTL
	}
	return ls.TTL
}

// reset drops the deadlines after the lease table was replaced (snapshot
// install); a leader re-promotes on its next check.
func (l *lessor) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.leader = false
	clear(l.mu.deadlines)
}

func (l *lessor) isLeader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.leader
}

// revokeExpired proposes revocation of expired leases (leader only).
func (l *lessor) revokeExpired(ctx context.Context) {
	l.mu.Lock()
	if !l.mu.leader {
		l.mu.Unlock()
		return
	}
	now := time.Now()
	var expired []int64
	for id, d := range l.mu.deadlines {
		if now.After(d) {
			expired = append(expired, id)
			if len(expired) == maxLeaseRevokesPerCheck {
				break
			}
		}
	}
	l.mu.Unlock()
	for _, id := range expired {
		rctx, cancel := context.WithTimeout(ctx, l.s.cfg.RequestTimeout)
		_, err := l.s.propose(rctx, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}})
		cancel()
		switch {
		case errors.Is(err, mvcc.ErrLeaseNotFound):
			// Revoked meanwhile by a client: stop tracking it.
			l.mu.Lock()
			delete(l.mu.deadlines, id)
			l.mu.Unlock()
		case err != nil:
			l.s.lg.Warn("revoking expired lease failed", zap.Int64("lease-id", id), zap.Error(err))
		}
	}
}

// checkpoint persists remaining TTLs through raft (leader only).
func (l *lessor) checkpoint(ctx context.Context) {
	l.mu.Lock()
	if !l.mu.leader {
		l.mu.Unlock()
		return
	}
	now := time.Now()
	cps := make([]*pb.LeaseCheckpoint, 0, len(l.mu.deadlines))
	for id, d := range l.mu.deadlines {
		rem := int64(math.Ceil(d.Sub(now).Seconds()))
		if rem > 0 {
			cps = append(cps, &pb.LeaseCheckpoint{ID: id, Remaining_TTL: rem})
		}
	}
	l.mu.Unlock()
	sort.Slice(cps, func(i, j int) bool { return cps[i].ID < cps[j].ID })
	for len(cps) > 0 {
		n := min(len(cps), maxCheckpointsPerRequest)
		rctx, cancel := context.WithTimeout(ctx, l.s.cfg.RequestTimeout)
		_, err := l.s.propose(rctx, &pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: cps[:n]}})
		cancel()
		if err != nil {
			l.s.lg.Warn("lease checkpoint failed", zap.Error(err))
			return
		}
		cps = cps[n:]
	}
}

// Apply side.

func (l *lessor) applyGrant(idx uint64, r *pb.LeaseGrantRequest) result {
	ttl := max(r.TTL, l.minTTL)
	if err := l.s.kv.LeaseGrant(idx, r.ID, ttl); err != nil {
		l.s.ensureApplied(idx)
		return result{err: err}
	}
	// A grant right after an election must get its deadline from now, not
	// the promotion's extended one.
	l.syncLeadership()
	l.mu.Lock()
	if l.mu.leader {
		l.mu.deadlines[r.ID] = time.Now().Add(time.Duration(ttl) * time.Second)
	}
	l.mu.Unlock()
	return result{resp: &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: l.s.kv.Rev()}, ID: r.ID, TTL: ttl}}
}

func (l *lessor) applyRevoke(idx uint64, r *pb.LeaseRevokeRequest) result {
	rev, err := l.s.kv.LeaseRevoke(idx, r.ID)
	if err != nil {
		l.s.ensureApplied(idx)
		return result{err: err}
	}
	l.mu.Lock()
	delete(l.mu.deadlines, r.ID)
	l.mu.Unlock()
	return result{resp: &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: rev}}}
}

func (l *lessor) applyCheckpoint(idx uint64, r *pb.LeaseCheckpointRequest) result {
	cps := make([]mvcc.LeaseCheckpoint, 0, len(r.Checkpoints))
	for _, c := range r.Checkpoints {
		cps = append(cps, mvcc.LeaseCheckpoint{ID: c.ID, RemainingTTL: c.Remaining_TTL})
	}
	if err := l.s.kv.LeaseCheckpoints(idx, cps); err != nil {
		l.s.ensureApplied(idx)
		return result{err: err}
	}
	return result{resp: &pb.LeaseCheckpointResponse{}}
}

// renew refreshes a lease's deadline on the leader and returns its TTL.
func (l *lessor) renew(id int64) (int64, error) {
	return l.onLeader(id, func(ls mvcc.Lease) int64 {
		l.mu.deadlines[id] = time.Now().Add(time.Duration(ls.TTL) * time.Second)
		return ls.TTL
	})
}

// remaining returns the seconds left on a lease (leader only).
func (l *lessor) remaining(id int64) (int64, error) {
	return l.onLeader(id, func(ls mvcc.Lease) int64 {
		d, ok := l.mu.deadlines[id]
		if !ok {
			return ls.TTL
		}
		return max(int64(math.Ceil(time.Until(d).Seconds())), -1)
	})
}

// onLeader runs fn on lease id with l.mu held, if this member leads. It
// catches up with leadership first: the periodic check may not have
// promoted a new leader yet, and until then a single member would forward
// to itself (etcd promotes its lessor as soon as it wins).
func (l *lessor) onLeader(id int64, fn func(mvcc.Lease) int64) (int64, error) {
	l.syncLeadership()
	ls, ok := l.s.kv.Lease(id)
	if !ok {
		return 0, mvcc.ErrLeaseNotFound
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.mu.leader {
		return 0, errNotLeader
	}
	return fn(ls), nil
}

var errNotLeader = errors.New("server: not leader")

// leaseServer serves etcd's Lease service. KeepAlive and TimeToLive need the
// leader's deadlines; a follower forwards them to the leader over the
// leader's client URL, as etcd forwards them over its peer URL.
type leaseServer struct{ s *Server }

func (ls leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	s := ls.s
	if r.TTL > maxLeaseTTLSeconds {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	if r.ID == 0 {
		// As etcd: IDs come from the request ID generator, kept positive.
		r.ID = int64(s.ids.next() & (1<<63 - 1))
	}
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{LeaseGrant: r})
	if err != nil {
		return nil, toGRPCError(err)
	}
	out := resp.(*pb.LeaseGrantResponse)
	s.fillHeader(out.Header)
	return out, nil
}

func (ls leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := ls.s.propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: r})
	if err != nil {
		return nil, toGRPCError(err)
	}
	out := resp.(*pb.LeaseRevokeResponse)
	ls.s.fillHeader(out.Header)
	return out, nil
}

func (ls leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	s := ls.s
	if err := s.linearizableReadNotify(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	lease, ok := s.kv.Lease(r.ID)
	if !ok {
		// etcd answers a missing lease with TTL -1, not an error.
		return &pb.LeaseTimeToLiveResponse{Header: s.header(s.kv.Rev()), ID: r.ID, TTL: -1}, nil
	}
	rem, err := s.lessor.remaining(r.ID)
	if errors.Is(err, errNotLeader) {
		cli, cerr := s.leaderClient(ctx)
		if cerr != nil {
			return nil, toGRPCError(cerr)
		}
		return pb.NewLeaseClient(cli).LeaseTimeToLive(forwardAuthMetadata(ctx), r)
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: s.header(s.kv.Rev()), ID: r.ID, TTL: rem, GrantedTTL: lease.TTL}
	if r.Keys {
		keys, err := s.kv.LeaseKeys(r.ID)
		if err != nil {
			return nil, toGRPCError(err)
		}
		resp.Keys = keys
	}
	return resp, nil
}

func (ls leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	s := ls.s
	if err := s.linearizableReadNotify(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	all := s.kv.Leases()
	out := &pb.LeaseLeasesResponse{Header: s.header(s.kv.Rev()), Leases: make([]*pb.LeaseStatus, 0, len(all))}
	for _, l := range all {
		out.Leases = append(out.Leases, &pb.LeaseStatus{ID: l.ID})
	}
	return out, nil
}

// LeaseKeepAlive answers each keepalive on the stream with the lease's TTL
// (0 when the lease does not exist, as etcd). The stream ends when the
// client closes it or the member starts shutting down.
func (ls leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	s := ls.s
	reqs := make(chan *pb.LeaseKeepAliveRequest)
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- req:
			case <-stream.Context().Done():
				return
			}
		}
	}()
	var fwd pb.Lease_LeaseKeepAliveClient // to the leader, when this member is not
	for {
		var req *pb.LeaseKeepAliveRequest
		select {
		case req = <-reqs:
		case err := <-errc:
			if err == io.EOF {
				return nil
			}
			return err
		case <-s.draining:
			return rpctypes.ErrGRPCStopped
		}
		ttl, err := s.lessor.renew(req.ID)
		if errors.Is(err, errNotLeader) {
			if fwd == nil {
				cli, cerr := s.leaderClient(stream.Context())
				if cerr != nil {
					return toGRPCError(cerr)
				}
				if fwd, cerr = pb.NewLeaseClient(cli).LeaseKeepAlive(forwardAuthMetadata(stream.Context())); cerr != nil {
					return toGRPCError(cerr)
				}
			}
			if err := fwd.Send(req); err != nil {
				return toGRPCError(err)
			}
			resp, err := fwd.Recv()
			if err != nil {
				return toGRPCError(err)
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			continue
		}
		if errors.Is(err, mvcc.ErrLeaseNotFound) {
			ttl = 0
		} else if err != nil {
			return toGRPCError(err)
		}
		if err := stream.Send(&pb.LeaseKeepAliveResponse{Header: s.header(s.kv.Rev()), ID: req.ID, TTL: ttl}); err != nil {
			return err
		}
	}
}

// leaderClient returns a client connection to the current leader.
func (s *Server) leaderClient(ctx context.Context) (*grpc.ClientConn, error) {
	lead := s.node.Leader()
	if lead == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	m := s.cluster.Member(lead)
	if m == nil || len(m.ClientURLs) == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	return s.peerConns.get(lead, m.ClientURLs)
}
