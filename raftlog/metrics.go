package raftlog

import "sync/atomic"

// counter is a monotonically increasing metric.
type counter struct{ v atomic.Uint64 }

func (c *counter) add(d uint64) { c.v.Add(d) }
func (c *counter) load() uint64 { return c.v.Load() }

// Metrics are a node's counters and gauges, for monitoring and for the
// benchmarks' ratios (proposals per fsync, readers per ReadIndex round).
type Metrics struct {
	// Proposals is the number of entries proposed through Propose, and
	// ProposalBatches the MsgProps that carried them.
	Proposals, ProposalBatches uint64
	// ProposalsRejected counts Propose calls refused with
	// ErrTooManyRequests.
	ProposalsRejected uint64
	// ReadIndexRounds counts raft ReadIndex requests started (one per batch
	// of readers), ReadIndexRetries the rounds sent again after
	// ReadIndexRetryInterval.
	ReadIndexRounds, ReadIndexRetries uint64
	// Readies counts Ready structs handled.
	Readies uint64
	// SyncedWrites counts fsynced raft log batches (Storage.SyncedWrites).
	SyncedWrites uint64
	// LeaderChanges counts observed changes of leader (including to none).
	LeaderChanges uint64
	// SnapshotsSent counts MsgSnap handed to the transport;
	// SnapshotsRestored the snapshots installed through the Applier.
	SnapshotsSent, SnapshotsRestored uint64
	// CommittedIndex and AppliedIndex are the last known indexes.
	CommittedIndex, AppliedIndex uint64
	// EntryCacheBytes is Storage.CacheBytes.
	EntryCacheBytes int64
}

// nodeCounters are the counters the node updates.
type nodeCounters struct {
	proposals, proposalBatches, proposalsRejected counter
	readies, leaderChanges                        counter
	snapshotsSent, snapshotsRestored              counter
}

// Metrics returns the node's counters; safe from any goroutine.
func (n *Node) Metrics() Metrics {
	return Metrics{
		Proposals:         n.ctr.proposals.load(),
		ProposalBatches:   n.ctr.proposalBatches.load(),
		ProposalsRejected: n.ctr.proposalsRejected.load(),
		ReadIndexRounds:   n.reads.rounds.load(),
		ReadIndexRetries:  n.reads.retries.load(),
		Readies:           n.ctr.readies.load(),
		SyncedWrites:      n.st.SyncedWrites(),
		LeaderChanges:     n.ctr.leaderChanges.load(),
		SnapshotsSent:     n.ctr.snapshotsSent.load(),
		SnapshotsRestored: n.ctr.snapshotsRestored.load(),
		CommittedIndex:    n.committed.Load(),
		AppliedIndex:      n.applied.applied(),
		EntryCacheBytes:   n.st.CacheBytes(),
	}
}
