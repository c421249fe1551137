// Package raftlog replicates MetaStore through etcd's raft
// (go.etcd.io/raft/v3): a raft.Storage kept in the engine's raft column
// family (Storage) and the loop that drives a raft.RawNode (Node).
//
// Layering: raftlog imports engine; the server imports raftlog and
// implements Applier over mvcc; the transport (raftlog/transport)
// implements Transport and SnapshotSender.
//
// # Storage
//
// Entries live in engine.CFRaft, alone; hard state, snapshot metadata and
// a run-length index of the log's terms in engine.CFMeta (key layout in
// keys.go). Invariants:
//
//   - The log is [dummy, last]: dummy = FirstIndex()-1 keeps only its term
//     (raft's MemoryStorage convention), entries dummy+1..last are all
//     present, and the term runs cover [dummy, last] (terms.go).
//   - Memory is never ahead of the engine nor behind it: every change is
//     written first and applied to memory after, under one mutex.
//   - Save writes one batch per Ready (entries, hard state, snapshot): one
//     fsync for every proposal in the Ready (group commit). A conflicting
//     append deletes the old tail in the same batch. The batch is synced
//     only when raft needs it (entries, snapshot, term or vote changed).
//   - The entry cache is bounded in bytes, evicts oldest first, and never
//     aliases caller memory; reads of evicted entries go to the engine.
//     Term(i) never reads the engine.
//
// # Node
//
// Two goroutines. The raft goroutine owns the RawNode: it ticks, merges
// queued proposals into one MsgProp, steps inbound messages, runs control
// operations, and handles each Ready in this order: a leader sends its
// messages (not its acks) first, so followers write while it fsyncs (raft
// thesis 10.2.1, as etcd does); a received snapshot is installed by the
// Applier; the Ready is persisted (Save, fatal on error); committed conf
// changes are applied to raft; committed entries are queued for the apply
// goroutine; the remaining messages are sent (a follower sends only after
// its fsync: its acks and votes promise durable state); Advance. A single
// member therefore fsyncs before it applies, and applies before a caller
// hears of the commit.
//
// The apply goroutine calls Applier.RestoreSnapshot and Applier.Apply in
// log order, pipelined with the raft goroutine by at most
// applyQueueReadies Readies, skipping entries at or below
// Applier.AppliedIndex(), then wakes WaitApplied callers.
//
// # Restart, snapshots and compaction
//
// The state machine lives in the same engine as the log, so raft's
// snapshot is metadata only: index, term and ConfState. The server calls
// Node.CompactLog(i) with i some catch-up entries below the state it has
// written (etcd keeps SnapshotCatchUpEntries = 5000); the log is cut at i
// with the snapshot metadata set there in the same batch.
//
// On restart raft hands back every committed entry after the snapshot
// (raft.Config.Applied is left 0). The node re-applies their conf changes
// to raft, starting from the snapshot's ConfState, and the apply goroutine
// skips what the Applier already holds (etcd's consistent index).
//
// A follower that needs compacted entries gets a MsgSnap. The leader's
// SnapshotSender streams an engine checkpoint; the follower's
// Applier.RestoreSnapshot installs it. The checkpoint may be newer than
// the snapshot metadata (index j >= i): that is safe because state through
// j is committed, the follower's AppliedIndex becomes j, raft re-sends
// entries after i whose conf changes are re-applied to raft, and the apply
// goroutine skips those at or below j.
//
// # Bounds
//
// Proposal queue (MaxPendingProposals), proposals per MsgProp
// (MaxProposalBatch, MaxProposalBatchBytes), commit-apply gap (MaxApplyGapEntries), leader's
// uncommitted bytes (MaxUncommittedEntriesBytes), read waiters
// (MaxPendingReads), committed bytes per Ready
// (MaxCommittedSizePerReadyBytes), Readies queued for apply
// (applyQueueReadies), inbound messages (recvQueueMsgs), messages per
// Transport.Send (maxMessagesPerSend), control operations (ctrlQueueOps),
// conf change waiters (maxPendingConfChanges), entry cache
// (StorageConfig.EntryCacheBytes).
package raftlog
