package mvcc

import (
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Errors of the store, with etcd's texts. Apply-time errors are plain
// errors carrying etcd's internal message (the gRPC layer maps them like
// etcd's togRPCError: ErrCompacted -> rpctypes.ErrGRPCCompacted, ...).
var (
	// ErrCompacted: the requested revision is below the compacted revision.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	// ErrFutureRev: the requested revision is above the current revision.
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")
	// ErrLeaseNotFound: the lease does not exist (etcd lease.ErrLeaseNotFound).
	ErrLeaseNotFound = errors.New("lease not found")
	// ErrLeaseExists: LeaseGrant of an ID in use (etcd lease.ErrLeaseExists).
	ErrLeaseExists = errors.New("lease already exists")
	// ErrLeaseTTLTooLarge: TTL above MaxLeaseTTL (etcd lease.ErrLeaseTTLTooLarge).
	ErrLeaseTTLTooLarge = errors.New("too large lease TTL")
	// ErrTooManyLeases: LeaseGrant would exceed Config.MaxLeases.
	ErrTooManyLeases = errors.New("mvcc: too many leases")
	// ErrKeyNotFound: ignore_value or ignore_lease on a missing key
	// (etcd etcdserver/errors.ErrKeyNotFound).
	ErrKeyNotFound = errors.New("etcdserver: key not found")
	// ErrAlreadyApplied: the raft index was applied before; nothing changed.
	ErrAlreadyApplied = errors.New("mvcc: raft index already applied")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("mvcc: store closed")
	// ErrWriteFailed wraps an engine error from writing an apply batch: the
	// engine's state is unknown and the caller must stop, as after a failed
	// fsync; the entry is replayed from the raft log on restart.
	ErrWriteFailed = errors.New("mvcc: write batch failed")
)

// Request-validation errors: exactly the gRPC errors etcd's kvServer
// returns, so the gRPC layer can return them unchanged.
var (
	ErrEmptyKey          = rpctypes.ErrGRPCEmptyKey          // "etcdserver: key is not provided"
	ErrEmptyRequestOp    = rpctypes.ErrGRPCKeyNotFound       // empty RequestOp in a txn: etcd answers "etcdserver: key not found"
	ErrValueProvided     = rpctypes.ErrGRPCValueProvided     // "etcdserver: value is provided"
	ErrLeaseProvided     = rpctypes.ErrGRPCLeaseProvided     // "etcdserver: lease is provided"
	ErrTooManyOps        = rpctypes.ErrGRPCTooManyOps        // "etcdserver: too many operations in txn request"
	ErrDuplicateKey      = rpctypes.ErrGRPCDuplicateKey      // "etcdserver: duplicate key given in txn request"
	ErrInvalidSortOption = rpctypes.ErrGRPCInvalidSortOption // "etcdserver: invalid sort option"
)

// MaxLeaseTTL is the largest TTL LeaseGrant accepts, in seconds (etcd's).
const MaxLeaseTTL = 9_000_000_000
