package raftlog

import (
	"errors"

	"go.etcd.io/raft/v3"
)

// Errors returned by Node. The texts are etcd's (etcdserver/errors.go), so
// the gRPC layer can map them to the rpctypes errors clients match on.
var (
	// ErrTooManyRequests: the proposal queue, the read waiters, the
	// commit-apply gap or the leader's uncommitted log is full.
	ErrTooManyRequests = errors.New("etcdserver: too many requests")
	// ErrStopped: the node was stopped.
	ErrStopped = errors.New("etcdserver: server stopped")
	// ErrNoLeader: raft has no leader to take the request.
	ErrNoLeader = errors.New("etcdserver: no leader")
	// ErrLeaderChanged: the leader changed while a ReadIndex round was in
	// flight; the caller may retry.
	ErrLeaderChanged = errors.New("etcdserver: leader changed")
	// ErrTimeout: the operation did not complete in time (TransferLeadership
	// when its context ends before the transferee leads).
	ErrTimeout = errors.New("etcdserver: request timed out")
)

// ErrProposalDropped is raft's: the proposal was dropped for a reason other
// than the ones above (e.g. a leadership transfer is in progress, or this
// member was removed). The caller may retry.
var ErrProposalDropped = raft.ErrProposalDropped

// ErrCorruptLog is returned by Open when the persisted log contradicts
// itself (entries missing, terms disagreeing with the term runs).
var ErrCorruptLog = errors.New("raftlog: raft log is inconsistent")
