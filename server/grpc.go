package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"math"
	"net"
	"net/url"
	"runtime/debug"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// grpcOverheadBytes is added to --max-request-bytes for gRPC's own framing,
// as etcd does.
const grpcOverheadBytes = 512 * 1024

// maxSendMsgBytes bounds one response message, as etcd (math.MaxInt32).
const maxSendMsgBytes = math.MaxInt32

// grpcStreamWorkers is the number of long-lived goroutines that serve
// incoming streams (unary calls included). Without them gRPC starts a
// goroutine per call whose stack grows (and is copied) on every call:
// about 8% of a point get's CPU. Calls arriving while every worker is busy
// get a goroutine of their own, as before, so this bounds nothing but the
// idle goroutines kept (8 KiB stacks and up, each).
const grpcStreamWorkers = 128

func (s *Server) newGRPCServer() *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes + grpcOverheadBytes),
		grpc.MaxSendMsgSize(maxSendMsgBytes),
		grpc.MaxConcurrentStreams(s.cfg.MaxConcurrentStreams),
		grpc.NumStreamWorkers(grpcStreamWorkers),
		grpc.ChainUnaryInterceptor(s.unaryRecover),
		grpc.ChainStreamInterceptor(s.streamRecover),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
	}
	opts = append(opts, s.metricsServerOptions()...) // metrics.go
	// Outside the auth interceptor, so refused changes are recorded.
	opts = append(opts, grpc.ChainUnaryInterceptor(s.unaryAudit)) // audit.go
	// Inside the metrics interceptors, so refused requests are counted.
	opts = append(opts, grpc.ChainUnaryInterceptor(s.unaryAuth), grpc.ChainStreamInterceptor(s.streamAuth)) // auth_check.go
	if s.tlsc.client != nil {
		opts = append(opts, grpc.Creds(tlsPeerCreds{})) // tls.go
	}
	g := grpc.NewServer(opts...)
	pb.RegisterKVServer(g, kvServer{s})
	pb.RegisterWatchServer(g, s.newWatchServer())
	pb.RegisterLeaseServer(g, leaseServer{s})
	pb.RegisterClusterServer(g, clusterServer{s})
	pb.RegisterMaintenanceServer(g, maintenanceServer{s})
	pb.RegisterAuthServer(g, authServer{s})
	v3lockpb.RegisterLockServer(g, lockServer{s.selfClient})
	v3electionpb.RegisterElectionServer(g, electionServer{s.selfClient})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.obs.grpcHealth = hs // follows readiness (health.go)
	healthpb.RegisterHealthServer(g, hs)
	return g
}

func (s *Server) serveClients(ln net.Listener) {
	if err := s.grpc.Serve(ln); err != nil && s.ctx.Err() == nil {
		s.lg.Error("client listener failed", zap.String("address", ln.Addr().String()), zap.Error(err))
	}
}

// unaryRecover turns a panic in a handler into an error for that request
// alone, logging the stack: a bad request must not take the member down.
func (s *Server) unaryRecover(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.lg.Error("panic serving request", zap.String("method", info.FullMethod), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = status.Errorf(codes.Internal, "etcdserver: internal error serving %s", info.FullMethod)
		}
	}()
	return h(ctx, req)
}

func (s *Server) streamRecover(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.lg.Error("panic serving stream", zap.String("method", info.FullMethod), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = status.Errorf(codes.Internal, "etcdserver: internal error serving %s", info.FullMethod)
		}
	}()
	return h(srv, ss)
}

// memberConns caches client connections to other members (for forwarding
// lease keepalives to the leader).
type memberConns struct {
	tls   *tls.Config // for https client URLs; set before use
	mu    sync.Mutex
	conns map[uint64]*grpc.ClientConn
}

func (c *memberConns) get(id uint64, clientURLs []string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.conns[id]; cc != nil {
		return cc, nil
	}
	u, err := url.Parse(clientURLs[0])
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if u.Scheme == "https" && c.tls != nil {
		creds = credentials.NewTLS(c.tls)
	}
	cc, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("server: dial member %016x: %w", id, err)
	}
	if c.conns == nil {
		c.conns = map[uint64]*grpc.ClientConn{}
	}
	c.conns[id] = cc
	return cc, nil
}

func (c *memberConns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, cc := range c.conns {
		cc.Close()
		delete(c.conns, id)
	}
}
