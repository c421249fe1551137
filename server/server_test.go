package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metastore/metastore/tuning"
)

// freeLoopbackPorts reserves n free TCP ports on 127.0.0.1.
func freeLoopbackPorts(t testing.TB, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// inProcessConfig is a single-member configuration on free loopback ports
// with its data in dir.
func inProcessConfig(t testing.TB, dir string) Config {
	p := freeLoopbackPorts(t, 2)
	cfg := DefaultConfig()
	cfg.Name = "solo"
	cfg.DataDir = dir
	client := fmt.Sprintf("http://127.0.0.1:%d", p[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", p[1])
	cfg.ListenClientURLs, cfg.AdvertiseClientURLs = []string{client}, []string{client}
	cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs = []string{peer}, []string{peer}
	cfg.Engine = tuning.LowMemory()
	cfg.Logger = zap.NewNop()
	return cfg
}

// startInProcess starts a member from cfg and returns it with a client.
func startInProcess(t testing.TB, cfg Config) (*Server, *clientv3.Client) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		s.Stop()
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.AdvertiseClientURLs, DialTimeout: 5 * time.Second})
	if err != nil {
		s.Stop()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if _, err := cli.Get(ctx, "ready"); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("member not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s, cli
}

// unaryRecover and streamRecover are the recovery of unaryInterceptor and
// streamInterceptor alone (recoverCall), without the metrics and auth the
// interceptors need a whole member for.
func (s *Server) unaryRecover(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer s.recoverCall(info.FullMethod, "panic serving request", &err)
	return h(ctx, req)
}

func (s *Server) streamRecover(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer s.recoverCall(info.FullMethod, "panic serving stream", &err)
	return h(srv, ss)
}

func TestPanicInHandlerFailsOnlyThatRequest(t *testing.T) {
	s := &Server{lg: zap.NewNop()}
	_, err := s.unaryRecover(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/etcdserverpb.KV/Put"},
		func(context.Context, any) (any, error) { panic("bad request") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("unary panic: %v, want Internal", err)
	}
	err = s.streamRecover(nil, nil, &grpc.StreamServerInfo{FullMethod: "/etcdserverpb.Watch/Watch"},
		func(any, grpc.ServerStream) error { panic("bad stream") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("stream panic: %v, want Internal", err)
	}
	// A handler that does not panic is untouched.
	resp, err := s.unaryRecover(context.Background(), nil, &grpc.UnaryServerInfo{},
		func(context.Context, any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Fatalf("pass-through: %v %v", resp, err)
	}
}

// TestGracefulStop stops a member that has open watch and keepalive
// streams: Stop must end them (else GracefulStop would wait the whole
// timeout), return within the shutdown timeout, and
// leave every acknowledged write in place for the next start.
func TestGracefulStop(t *testing.T) {
	dir := t.TempDir()
	cfg := inProcessConfig(t, dir)
	cfg.ShutdownTimeout = 5 * time.Second
	s, cli := startInProcess(t, cfg)
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("k%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	wch := cli.Watch(ctx, "k", clientv3.WithPrefix())
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	<-ka
	start := time.Now()
	s.Stop()
	if took := time.Since(start); took > cfg.ShutdownTimeout {
		t.Fatalf("Stop took %v, more than the shutdown timeout", took)
	}
	// (clientv3 keeps retrying the watch against the stopped member: the
	// stream ending is visible as Stop returning before the timeout.)
	_ = wch
	cli.Close()

	cfg2 := inProcessConfig(t, dir)
	s2, cli2 := startInProcess(t, cfg2)
	defer s2.Stop()
	defer cli2.Close()
	r, err := cli2.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || r.Count != 100 {
		t.Fatalf("after restart: %v keys (err %v), want 100", r, err)
	}
	if _, ok := s2.kv.Lease(int64(lease.ID)); !ok {
		t.Fatal("lease lost across restart")
	}
}

// TestNoSpaceAlarm runs a member over its quota: writes fail with etcd's
// NOSPACE error and raise the alarm, reads and deletes are still served,
// and disarming clears the alarm.
func TestNoSpaceAlarm(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	cfg.QuotaBackendBytes = 1
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	ctx := context.Background()
	if _, err := cli.Put(ctx, "k", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put over quota: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	deadline := time.Now().Add(10 * time.Second)
	var alarms *clientv3.AlarmResponse
	for {
		var err error
		alarms, err = cli.AlarmList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(alarms.Alarms) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(alarms.Alarms) != 1 || alarms.Alarms[0].Alarm != pb.AlarmType_NOSPACE || alarms.Alarms[0].MemberID != s.ID() {
		t.Fatalf("alarms: %v", alarms.Alarms)
	}
	if _, err := cli.Get(ctx, "k"); err != nil {
		t.Fatalf("read under NOSPACE: %v", err)
	}
	if _, err := cli.Delete(ctx, "k"); err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("k", "v")).Commit(); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("txn put under NOSPACE: %v", err)
	}
	if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: s.ID(), Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	alarms, err := cli.AlarmList(ctx)
	if err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("after disarm: %v %v", alarms, err)
	}
}

// TestAutoCompactionRevision keeps the last N revisions in revision mode.
func TestAutoCompactionRevision(t *testing.T) {
	old := revisionCompactionInterval
	revisionCompactionInterval = 200 * time.Millisecond
	defer func() { revisionCompactionInterval = old }()
	cfg := inProcessConfig(t, t.TempDir())
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "10"
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	ctx := context.Background()
	var last int64
	for i := 0; i < 50; i++ {
		r, err := cli.Put(ctx, "k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.kv.CompactedRev() != last-10 {
		if time.Now().After(deadline) {
			t.Fatalf("compacted revision %d, want %d", s.kv.CompactedRev(), last-10)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cli.Get(ctx, "k", clientv3.WithRev(last-11)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("read below the retention: %v", err)
	}
}

func TestConfigValidateReportsEveryViolation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name = "x"
	cfg.InitialClusterState = "bogus"
	cfg.HeartbeatInterval = 100 * time.Millisecond
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.MaxTxnOps = 0
	cfg.AutoCompactionMode = "sometimes"
	cfg.CompactionBatchLimit = 0
	cfg.CompactionBusyPercent = 101
	cfg.CountIndexBucketKeys = 0
	cfg.LatestCacheBytes = -1
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"--initial-cluster-state", "--election-timeout", "--max-txn-ops", "--auto-compaction-mode",
		"--compaction-batch-limit", "--compaction-busy-percent", "--count-index-bucket-keys", "--latest-cache-bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("violation %s not reported in:\n%v", want, err)
		}
	}
}

func TestMemberAndClusterIDsMatchEtcd(t *testing.T) {
	// The IDs etcd 3.6 derives for this initial cluster and token (as
	// printed by etcd itself for the same --initial-cluster).
	ms, err := parseInitialCluster("default=http://localhost:2380", "etcd-cluster")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%x", ms[0].ID); got != "8e9e05c52164694d" {
		t.Fatalf("member id %s, want etcd's 8e9e05c52164694d", got)
	}
	if got := fmt.Sprintf("%x", computeClusterID([]uint64{ms[0].ID})); got != "cdf818194e3a8c32" {
		t.Fatalf("cluster id %s, want etcd's cdf818194e3a8c32", got)
	}
}

// TestLeaseExpiry: a lease that is not kept alive is revoked by the leader
// through raft, with its keys; one that is kept alive survives.
func TestLeaseExpiry(t *testing.T) {
	cfg := inProcessConfig(t, t.TempDir())
	cfg.LeaseCheckInterval = 100 * time.Millisecond
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	ctx := context.Background()
	short, err := cli.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if short.TTL != 2 {
		t.Fatalf("granted TTL %d, want the minimum 2 (1.5 election timeouts, rounded up)", short.TTL)
	}
	kept, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "expires", "v", clientv3.WithLease(short.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "stays", "v", clientv3.WithLease(kept.ID)); err != nil {
		t.Fatal(err)
	}
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := cli.KeepAlive(kctx, kept.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := cli.Get(ctx, "expires")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key of an expired lease still present")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ttl, err := cli.TimeToLive(ctx, short.ID)
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("expired lease TimeToLive: %v %v, want TTL -1", ttl, err)
	}
	r, err := cli.Get(ctx, "stays")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("kept-alive lease lost its key: %v %v", r, err)
	}
}
