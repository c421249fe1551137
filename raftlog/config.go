package raftlog

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Defaults, in one place. Each is the value a zero field of StorageConfig or
// Config takes.
const (
	// DefaultEntryCacheBytes bounds the entry cache (StorageConfig).
	DefaultEntryCacheBytes = 64 << 20

	// DefaultTickInterval matches etcd's --heartbeat-interval.
	DefaultTickInterval = 100 * time.Millisecond
	// DefaultElectionTicks is 1000ms at the default tick, etcd's
	// --election-timeout.
	DefaultElectionTicks = 10
	// DefaultHeartbeatTicks sends a heartbeat every tick, as etcd does.
	DefaultHeartbeatTicks = 1
	// DefaultMaxSizePerMsgBytes bounds one MsgApp (etcd: 1 MiB).
	DefaultMaxSizePerMsgBytes = 1 << 20
	// DefaultMaxInflightMsgs bounds MsgApps in flight per follower (etcd:
	// 4096/8 = 512).
	DefaultMaxInflightMsgs = 512
	// DefaultMaxPendingProposals bounds proposals queued for the raft
	// goroutine.
	DefaultMaxPendingProposals = 4096
	// DefaultMaxProposalBatch bounds the proposals merged into one MsgProp.
	DefaultMaxProposalBatch = 256
	// DefaultMaxProposalBatchBytes bounds the data merged into one MsgProp,
	// which a follower forwards to the leader as one message.
	DefaultMaxProposalBatchBytes = 1 << 20
	// DefaultMaxCommittedSizePerReadyBytes bounds the committed entries
	// handed to the applier in one Ready.
	DefaultMaxCommittedSizePerReadyBytes = 16 << 20
	// DefaultMaxUncommittedEntriesBytes bounds the leader's uncommitted log
	// tail (etcd: 1 GiB); beyond it proposals fail with ErrTooManyRequests.
	DefaultMaxUncommittedEntriesBytes = 1 << 30
	// DefaultMaxPendingReads bounds callers waiting in ReadIndex.
	DefaultMaxPendingReads = 4096
	// DefaultMaxApplyGapEntries is etcd's maxGapBetweenApplyAndCommitIndex:
	// when the committed index runs this far ahead of the applied index,
	// proposals fail with ErrTooManyRequests.
	DefaultMaxApplyGapEntries = 5000
	// DefaultReadIndexRetryInterval is etcd's readIndexRetryTime: how long
	// a ReadIndex round may stay unanswered before it is sent again.
	DefaultReadIndexRetryInterval = 500 * time.Millisecond
)

// Internal bounds that an operator has no reason to change.
const (
	// applyQueueReadies bounds the Readies handed to the apply goroutine
	// and not yet applied: apply is pipelined with the next Ready, at most
	// this many deep. Memory held is at most applyQueueReadies *
	// MaxCommittedSizePerReadyBytes.
	applyQueueReadies = 4
	// maxMessagesPerSend bounds the messages passed to one Transport.Send.
	maxMessagesPerSend = 256
	// recvQueueMsgs bounds inbound messages waiting for the raft goroutine;
	// Step blocks (until its context ends) while it is full.
	recvQueueMsgs = 1024
	// ctrlQueueOps bounds control operations (conf changes, transfers,
	// status, reports) waiting for the raft goroutine.
	ctrlQueueOps = 64
	// maxPendingConfChanges bounds ProposeConfChange callers waiting for
	// their change to be applied.
	maxPendingConfChanges = 64
	// maxStepsPerLoop bounds the inbound messages stepped between two
	// Readies, so a flood of messages cannot starve persistence.
	maxStepsPerLoop = 256
)

// StorageConfig configures Storage. The zero value is the default.
type StorageConfig struct {
	// EntryCacheBytes bounds the encoded bytes of the entries kept in
	// memory. Default 64 MiB.
	EntryCacheBytes int64
	// Logger receives invariant violations before the panic. Default: no-op.
	Logger *zap.Logger
	// OnSyncedWrite, if set, is called after each fsynced Save with the
	// time the engine write took (the server's WAL fsync metric). It runs
	// on the raft goroutine: it must be cheap and must not block. Default
	// nil.
	OnSyncedWrite func(took time.Duration)
}

// withDefaults returns the config with zero fields set to their defaults.
func (c StorageConfig) withDefaults() StorageConfig {
	if c.EntryCacheBytes == 0 {
		c.EntryCacheBytes = DefaultEntryCacheBytes
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Validate reports every invalid field.
func (c StorageConfig) Validate() error {
	var errs []error
	if c.EntryCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("EntryCacheBytes = %d, want >= 0", c.EntryCacheBytes))
	}
	return joinInvalid(errs)
}

// Config configures a Node. Each field's comment gives its default: a zero
// numeric field takes it (withDefaults), and DefaultConfig sets the two
// booleans. Validate reports every violation at once.
type Config struct {
	// ID is this member's raft ID; required, nonzero.
	ID uint64
	// TickInterval is the duration of one raft tick. Default 100ms (etcd's
	// --heartbeat-interval).
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks. Default 10 (1000ms at
	// the default tick, etcd's --election-timeout). Must exceed
	// HeartbeatTicks.
	ElectionTicks int
	// HeartbeatTicks is the heartbeat interval in ticks. Default 1.
	HeartbeatTicks int
	// PreVote enables raft's pre-vote (thesis 9.6), so that a member
	// rejoining from a partition does not depose a healthy leader. Default
	// true in DefaultConfig; a bool cannot tell unset from false, so a
	// Config literal must set it (StartNode warns when it is off).
	PreVote bool
	// CheckQuorum makes a leader that has not heard from a quorum for an
	// election timeout step down; ReadIndex and leader leases rely on it.
	// Default true in DefaultConfig; a Config literal must set it (StartNode
	// warns when it is off).
	CheckQuorum bool
	// MaxSizePerMsgBytes bounds the entries of one MsgApp. Default 1 MiB.
	MaxSizePerMsgBytes uint64
	// MaxInflightMsgs bounds the MsgApps in flight to one follower.
	// Default 512.
	MaxInflightMsgs int
	// MaxPendingProposals bounds the proposals queued for the raft
	// goroutine; beyond it Propose fails with ErrTooManyRequests. Default
	// 4096.
	MaxPendingProposals int
	// MaxProposalBatch bounds how many queued proposals are merged into one
	// MsgProp. Default 256.
	MaxProposalBatch int
	// MaxProposalBatchBytes bounds the data of the proposals merged into
	// one MsgProp: the batch closes once it holds this much, so it exceeds
	// it by less than one proposal. A follower forwards the batch to the
	// leader as one message. Default 1 MiB.
	// Group commit does not depend on it: every proposal stepped before the
	// next Ready shares its fsync.
	MaxProposalBatchBytes uint64
	// MaxCommittedSizePerReadyBytes bounds the committed entries of one
	// Ready, and so one Applier.Apply call. Default 16 MiB.
	MaxCommittedSizePerReadyBytes uint64
	// MaxUncommittedEntriesBytes bounds the leader's uncommitted log tail;
	// proposals beyond it fail with ErrTooManyRequests. Default 1 GiB.
	MaxUncommittedEntriesBytes uint64
	// MaxPendingReads bounds the callers waiting in ReadIndex; beyond it
	// ReadIndex fails with ErrTooManyRequests. Default 4096.
	MaxPendingReads int
	// MaxApplyGapEntries bounds committed-but-unapplied entries; beyond it
	// Propose fails with ErrTooManyRequests. Default 5000 (etcd).
	MaxApplyGapEntries uint64
	// ReadIndexRetryInterval is how long a ReadIndex round waits for its
	// answer before it is sent again. Default 500ms (etcd).
	ReadIndexRetryInterval time.Duration
}

// DefaultConfig returns the configuration of member id with every field at
// its default, PreVote and CheckQuorum on.
func DefaultConfig(id uint64) Config {
	c := Config{ID: id, PreVote: true, CheckQuorum: true}
	return c.withDefaults()
}

// Validation limits of Config.
const (
	maxTickInterval = time.Minute
)

// withDefaults returns the config with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.MaxSizePerMsgBytes == 0 {
		c.MaxSizePerMsgBytes = DefaultMaxSizePerMsgBytes
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if c.MaxPendingProposals == 0 {
		c.MaxPendingProposals = DefaultMaxPendingProposals
	}
	if c.MaxProposalBatch == 0 {
		c.MaxProposalBatch = DefaultMaxProposalBatch
	}
	if c.MaxProposalBatchBytes == 0 {
		c.MaxProposalBatchBytes = DefaultMaxProposalBatchBytes
	}
	if c.MaxCommittedSizePerReadyBytes == 0 {
		c.MaxCommittedSizePerReadyBytes = DefaultMaxCommittedSizePerReadyBytes
	}
	if c.MaxUncommittedEntriesBytes == 0 {
		c.MaxUncommittedEntriesBytes = DefaultMaxUncommittedEntriesBytes
	}
	if c.MaxPendingReads == 0 {
		c.MaxPendingReads = DefaultMaxPendingReads
	}
	if c.MaxApplyGapEntries == 0 {
		c.MaxApplyGapEntries = DefaultMaxApplyGapEntries
	}
	if c.ReadIndexRetryInterval == 0 {
		c.ReadIndexRetryInterval = DefaultReadIndexRetryInterval
	}
	return c
}

// Validate reports every invalid field of the config after defaults are
// filled in.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.ID == 0 {
		bad("ID = 0, want a nonzero member ID")
	}
	if c.TickInterval < 0 || c.TickInterval > maxTickInterval {
		bad("TickInterval = %v, want in (0, %v]", c.TickInterval, maxTickInterval)
	}
	if c.HeartbeatTicks < 0 {
		bad("HeartbeatTicks = %d, want > 0", c.HeartbeatTicks)
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		bad("ElectionTicks = %d, want > HeartbeatTicks (%d)", c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.MaxInflightMsgs < 0 {
		bad("MaxInflightMsgs = %d, want > 0", c.MaxInflightMsgs)
	}
	if c.MaxPendingProposals < 0 {
		bad("MaxPendingProposals = %d, want > 0", c.MaxPendingProposals)
	}
	if c.MaxProposalBatch < 0 {
		bad("MaxProposalBatch = %d, want > 0", c.MaxProposalBatch)
	}
	if c.MaxPendingReads < 0 {
		bad("MaxPendingReads = %d, want > 0", c.MaxPendingReads)
	}
	if c.ReadIndexRetryInterval < 0 {
		bad("ReadIndexRetryInterval = %v, want > 0", c.ReadIndexRetryInterval)
	}
	return joinInvalid(errs)
}

// ErrInvalidConfig wraps every configuration violation.
var ErrInvalidConfig = errors.New("raftlog: invalid config")

func joinInvalid(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
