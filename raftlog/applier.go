package raftlog

import (
	"go.etcd.io/raft/v3/raftpb"
)

// Applier is the state machine the node feeds with committed entries. The
// node calls Apply and RestoreSnapshot from one goroutine, in log order,
// pipelined with the raft goroutine (which may already be persisting the
// next Ready). AppliedIndex may be called from any goroutine.
type Applier interface {
	// Apply applies committed entries in order. ents is never empty and
	// starts right after AppliedIndex() (the node skips entries at or below
	// it, which raft replays after a restart or a snapshot).
	//
	//  - EntryNormal with empty Data is raft's no-op (a new leader's first
	//    entry): nothing to apply but its index.
	//  - EntryConfChange / EntryConfChangeV2: the node has already applied
	//    the change to raft (RawNode.ApplyConfChange) and confStates[index]
	//    is the resulting ConfState. The applier records it with the applied
	//    index: it describes the membership of this state, which a snapshot
	//    made from it must carry. confStates is nil when ents has no conf
	//    change.
	//
	// Apply must persist the applied index (the last entry's) atomically
	// with the entries' effects: one engine batch. The batch need not be
	// synced: the entries are already durable in the raft log, written
	// earlier to the same RocksDB WAL, so applied state lost in a crash is
	// always state raft still has the entries for and replays. Apply may
	// keep neither ents nor the entries' Data beyond the call without
	// copying (raft shares them). Apply has no error to return: the entries
	// are committed, so a request that fails is applied as a failure (its
	// index persisted), and a failure to persist is fatal to the process
	// (the applier stops it, as etcd does). When Apply returns,
	// AppliedIndex must be the last entry's index; the node checks.
	Apply(ents []raftpb.Entry, confStates map[uint64]raftpb.ConfState)

	// AppliedIndex returns the index of the last applied entry (or of the
	// restored snapshot); cheap, called often.
	AppliedIndex() uint64

	// RestoreSnapshot replaces the state with the snapshot received from the
	// leader. snap.Data is whatever the sender's transport put there (see
	// SnapshotSender); the state it installs may be newer than
	// snap.Metadata.Index, and AppliedIndex must then report the installed
	// state's index. It runs after every entry before the snapshot and
	// before any after it, and before raft's log records the snapshot: a
	// crash in between leaves the state ahead of the log, which is safe.
	// Its writes must therefore be durable by the time raft's next synced
	// write is (true of engine writes, which share the WAL). An error is
	// fatal.
	RestoreSnapshot(snap raftpb.Snapshot) error
}
