package server

import (
	"context"
	"math"
	"net"
	"net/http"

	gw "github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	etcdservergw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	v3electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	v3lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

// newGateway builds etcd's JSON gateway (/v3/kv/put, /v3/watch, ...) as
// etcd's embed/serve.go registerGateway does: grpc-gateway handlers that
// call this member's gRPC server through a client connection to its first
// client listener, with etcd's JSON options (proto field names, unknown
// fields ignored). Server-streaming calls (watch, lease keep-alive) answer
// newline-delimited JSON; etcd's websocket upgrade of them is not served.
func (s *Server) newGateway() (http.Handler, error) {
	creds := insecure.NewCredentials()
	if tc := s.selfDialTLS(); tc != nil {
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(selfTarget(s.clientLns[0]),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		return nil, err
	}
	s.obs.gwConn = conn
	mux := gw.NewServeMux(
		gw.WithMarshalerOption(gw.MIMEWildcard, &gw.HTTPBodyMarshaler{
			Marshaler: &gw.JSONPb{
				MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
				UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
			},
		}),
	)
	register := []func(context.Context, *gw.ServeMux, *grpc.ClientConn) error{
		etcdservergw.RegisterKVHandler,
		etcdservergw.RegisterWatchHandler,
		etcdservergw.RegisterLeaseHandler,
		etcdservergw.RegisterClusterHandler,
		etcdservergw.RegisterMaintenanceHandler,
		etcdservergw.RegisterAuthHandler,
		v3lockgw.RegisterLockHandler,
		v3electiongw.RegisterElectionHandler,
	}
	for _, r := range register {
		if err := r(s.ctx, mux, conn); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return mux, nil
}

// selfTarget is the gRPC target that reaches listener ln from this process.
func selfTarget(ln net.Listener) string {
	if ln.Addr().Network() == "unix" {
		return "unix:" + ln.Addr().String()
	}
	return ln.Addr().String()
}
