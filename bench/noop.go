package bench

import (
	"context"
	"math"
	"net"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// NoopServer is an etcd v3 KV gRPC service that does no work: every Range,
// Put, DeleteRange, Txn and Compact is answered at once with an empty
// response (a header with a growing revision, no keys). It measures the
// ceiling a real server cannot pass on the same machine: the cost of gRPC,
// the load tool and the kernel's loopback alone. `metastore-bench
// noop-server` serves it; scripts/bench-compare.sh runs the standard
// matrix against it beside MetaStore and etcd.
//
// It keeps nothing, so it is safe for any number of concurrent calls.
type NoopServer struct {
	pb.UnimplementedKVServer
	rev   atomic.Int64
	calls atomic.Int64
}

// NoopMemberID and NoopClusterID are the ids in every response header.
const (
	NoopMemberID  = 0x6e6f6f70 // "noop"
	NoopClusterID = 0x6e6f6f70
)

func (s *NoopServer) header(write bool) *pb.ResponseHeader {
	s.calls.Add(1)
	rev := s.rev.Load()
	if write {
		rev = s.rev.Add(1)
	}
	return &pb.ResponseHeader{ClusterId: NoopClusterID, MemberId: NoopMemberID, Revision: rev, RaftTerm: 1}
}

// Calls returns the number of requests answered so far.
func (s *NoopServer) Calls() int64 { return s.calls.Load() }

// Range answers with no keys.
func (s *NoopServer) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{Header: s.header(false)}, nil
}

// Put answers as if the put was applied; nothing is stored.
func (s *NoopServer) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	return &pb.PutResponse{Header: s.header(true)}, nil
}

// DeleteRange answers that nothing was deleted.
func (s *NoopServer) DeleteRange(context.Context, *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return &pb.DeleteRangeResponse{Header: s.header(true)}, nil
}

// Txn answers that the compares succeeded, with no responses.
func (s *NoopServer) Txn(context.Context, *pb.TxnRequest) (*pb.TxnResponse, error) {
	return &pb.TxnResponse{Header: s.header(true), Succeeded: true}, nil
}

// Compact answers that the compaction was done.
func (s *NoopServer) Compact(context.Context, *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return &pb.CompactionResponse{Header: s.header(false)}, nil
}

// Serve serves s on lis until ctx is done, with the stream limit etcd's
// server sets (math.MaxUint32), then stops gracefully.
func (s *NoopServer) Serve(ctx context.Context, lis net.Listener) error {
	g := grpc.NewServer(grpc.MaxConcurrentStreams(math.MaxUint32))
	pb.RegisterKVServer(g, s)
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			g.GracefulStop()
		case <-done:
		}
	}()
	err := g.Serve(lis)
	close(done)
	if ctx.Err() != nil {
		return nil
	}
	return err
}
