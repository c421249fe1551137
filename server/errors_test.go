package server

import (
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/metastore/metastore/mvcc"
)

// TestToGRPCErrorApplyErrors: apply errors, bare or wrapped the way the
// txn path wraps them, map to etcd's gRPC errors (etcd's toGRPCErrorMap).
func TestToGRPCErrorApplyErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
		{mvcc.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
		{mvcc.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
		{mvcc.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
		// ignore_value / ignore_lease on a missing key: InvalidArgument,
		// not Unknown (found by TestDifferentialErrors).
		{mvcc.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
		{fmt.Errorf("applyTxn: failed Put: %w", mvcc.ErrKeyNotFound), rpctypes.ErrGRPCKeyNotFound},
	} {
		if got := toGRPCError(tc.err); !errors.Is(got, tc.want) {
			t.Errorf("toGRPCError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
