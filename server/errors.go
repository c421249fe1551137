package server

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metastore/metastore/mvcc"
	"github.com/metastore/metastore/raftlog"
)

// Server-side errors without a lower-layer equivalent.
var (
	errRequestTooLarge = errors.New("server: request is too large")
	errStopped         = errors.New("server: server stopped")
	errNoSpace         = errors.New("server: database space exceeded")
	errCorrupt         = errors.New("server: corrupt cluster")
	errMemberNotFound  = errors.New("server: member not found")
)

// toGRPCError turns an internal error into the exact status etcd returns,
// because clients match on them (rpctypes).
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isContextErr(err) {
		return err // already a gRPC status
	}
	switch {
	case errors.Is(err, mvcc.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, mvcc.ErrFutureRev):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, mvcc.ErrLeaseNotFound):
		return rpctypes.ErrGRPCLeaseNotFound
	case errors.Is(err, mvcc.ErrLeaseExists):
		return rpctypes.ErrGRPCLeaseExist
	case errors.Is(err, mvcc.ErrKeyNotFound):
		return rpctypes.ErrGRPCKeyNotFound
	case errors.Is(err, errRequestTooLarge):
		return rpctypes.ErrGRPCRequestTooLarge
	case errors.Is(err, errNoSpace):
		return rpctypes.ErrGRPCNoSpace
	case errors.Is(err, errCorrupt):
		return rpctypes.ErrGRPCCorrupt
	case errors.Is(err, errStopped), errors.Is(err, raftlog.ErrStopped):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, raftlog.ErrTooManyRequests):
		return rpctypes.ErrGRPCRequestTooManyRequests
	case errors.Is(err, raftlog.ErrNoLeader):
		return rpctypes.ErrGRPCNoLeader
	case errors.Is(err, raftlog.ErrLeaderChanged):
		return rpctypes.ErrGRPCLeaderChanged
	case errors.Is(err, raftlog.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	case errors.Is(err, errMemberRemoved):
		return status.Error(codes.FailedPrecondition, "etcdserver: the member has been permanently removed from the cluster")
	case errors.Is(err, errMemberNotFound):
		return rpctypes.ErrGRPCMemberNotFound
	case errors.Is(err, errPeerURLExists):
		return rpctypes.ErrGRPCPeerURLExist
	}
	return status.Error(codes.Unknown, err.Error())
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
