package server

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestLeaseRightAfterStart: TimeToLive and KeepAlive work as soon as the
// member serves, before the lessor's periodic check noticed leadership
// (they answered "etcdserver: no leader" for up to LeaseCheckInterval), and
// a negative lease ID is granted as etcd grants it. Found by
// TestDifferentialErrors (cmd/metastore).
func TestLeaseRightAfterStart(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	cfg.LeaseCheckInterval = time.Hour // the periodic check never runs
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lc := pb.NewLeaseClient(cli.ActiveConnection())

	for _, id := range []int64{7, -5} {
		g, err := lc.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: 60})
		if err != nil || g.ID != id || g.TTL != 60 {
			t.Fatalf("grant %d: %v %v", id, g, err)
		}
		ttl, err := lc.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: id})
		if err != nil || ttl.GrantedTTL != 60 || ttl.TTL < 58 || ttl.TTL > 60 {
			t.Fatalf("TimeToLive %d: %v %v", id, ttl, err)
		}
		ka, err := lc.LeaseKeepAlive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
			t.Fatal(err)
		}
		r, err := ka.Recv()
		if err != nil || r.ID != id || r.TTL != 60 {
			t.Fatalf("KeepAlive %d: %v %v", id, r, err)
		}
		ka.CloseSend()
	}
	ls, err := lc.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
	if err != nil || len(ls.Leases) != 2 {
		t.Fatalf("leases: %v %v", ls, err)
	}
}
