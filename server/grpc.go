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
// idle goroutines kept (8 KiB stacks and up, each). A long-lived stream
// (Watch, LeaseKeepAlive, Snapshot) holds its worker until it ends: with
// 128 workers, 100 watch streams left 28 for 100 clients' puts, and the
// calls beyond them paid for new goroutines' stacks again (10k idle
// watchers on 100 streams cost puts 12 µs of CPU each, 2.5% of it in
// runtime.newstack). 512 leaves room for a few hundred streams.
const grpcStreamWorkers = 512

// minStreamWindowBytes is the least receive window of a client stream.
const minStreamWindowBytes = 1 << 20

// streamWindowBytes is the receive window of a client stream: room for the
// largest request and gRPC's framing, at least minStreamWindowBytes.
func (s *Server) streamWindowBytes() int32 {
	return int32(min(max(int64(s.cfg.MaxRequestBytes)+grpcOverheadBytes, minStreamWindowBytes), math.MaxInt32/2))
}

func (s *Server) newGRPCServer() *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes + grpcOverheadBytes),
		grpc.MaxSendMsgSize(maxSendMsgBytes),
		grpc.MaxConcurrentStreams(s.cfg.MaxConcurrentStreams),
		grpc.NumStreamWorkers(grpcStreamWorkers),
		// Fixed receive windows: with gRPC's dynamic ones (BDP estimation)
		// the server pings every connection once per round trip while
		// requests arrive, close to a ping and its ack per put under load.
		// A stream's window holds the largest request, so none waits for a
		// window update.
		grpc.StaticStreamWindowSize(s.streamWindowBytes()),
		grpc.StaticConnWindowSize(2 * s.streamWindowBytes()),
		// One interceptor of each kind, each doing the work of a chain
		// (recovery, metrics, audit, auth): gRPC's chains allocate a
		// closure per interceptor per call.
		grpc.UnaryInterceptor(s.unaryInterceptor),
		grpc.StreamInterceptor(s.streamInterceptor),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
	}
	opts = append(opts, s.metricsServerOptions()...) // metrics.go
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

// unaryInterceptor serves every unary call. In order, outermost first:
// the panic recovery, the grpc_server_* metrics (grpcmetrics.go), the
// read-only request observer (metrics.go), the audit trail (audit.go,
// outside the auth check so refused changes are recorded) and the
// API-layer authorization (auth_check.go, inside the metrics so refused
// requests are counted).
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer s.recoverCall(info.FullMethod, "panic serving request", &err)
	mm := s.obs.metrics.grpc.method(grpcTypeUnary, info.FullMethod)
	mm.started.Inc()
	mm.received.Inc()
	read := isObservedRead(req)
	var start time.Time
	if read || mm.handling != nil {
		start = time.Now()
	}
	if auditedMethods[info.FullMethod] != "" {
		resp, err = s.unaryAudit(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return s.unaryAuth(ctx, req, info, h)
		})
	} else {
		resp, err = s.unaryAuth(ctx, req, info, h)
	}
	if read {
		s.observeRead(req, resp, err, time.Since(start))
	}
	mm.sent.Inc()
	mm.done(err, start)
	return resp, err
}

// streamInterceptor serves every stream: the panic recovery, the
// grpc_server_* metrics and the API-layer authorization.
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer s.recoverCall(info.FullMethod, "panic serving stream", &err)
	mm := s.obs.metrics.grpc.method(methodType(info.IsClientStream, info.IsServerStream), info.FullMethod)
	mm.started.Inc()
	var start time.Time
	if mm.handling != nil {
		start = time.Now()
	}
	err = s.streamAuth(srv, countedServerStream{ServerStream: ss, mm: mm}, info, h)
	mm.done(err, start)
	return err
}

// recoverCall, deferred, turns a panic in a handler into an error for that
// call alone, logging the stack: a bad request must not take the member
// down.
func (s *Server) recoverCall(method, msg string, err *error) {
	if r := recover(); r != nil {
		s.lg.Error(msg, zap.String("method", method), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
		*err = status.Errorf(codes.Internal, "etcdserver: internal error serving %s", method)
	}
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
