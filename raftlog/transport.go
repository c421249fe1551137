package raftlog

import (
	"go.etcd.io/raft/v3/raftpb"
)

// Peer is a member of the initial cluster, given to StartNode to bootstrap
// a new cluster. Context is opaque to raft; it is carried in the
// bootstrapping ConfChange entries (etcd puts the member's attributes
// there).
type Peer struct {
	ID      uint64
	Context []byte
}

// Transport carries raft messages to other members.
//
// Send must not block: it queues the messages and returns, dropping what it
// cannot queue (raft retransmits). It is called from the raft goroutine with
// at most maxMessagesPerSend messages; the slice and the messages are the
// transport's to keep, but the entries inside must not be mutated. When a
// member is unreachable the transport should call Node.ReportUnreachable.
//
// A transport that does not implement SnapshotSender receives MsgSnap
// through Send too, and must then honour SnapshotSender's contract for it.
type Transport interface {
	Send(msgs []raftpb.Message)
}

// SnapshotSender is implemented by transports that stream snapshots out of
// band. MetaStore's raft snapshot is metadata only (Storage.Snapshot): the
// state it stands for is the engine itself, so the transport streams an
// engine checkpoint, puts whatever the receiver's Applier.RestoreSnapshot
// needs to find it into the message's Snapshot.Data (on a copy: the
// Snapshot pointed to is shared with raft), and hands the message to the
// receiver's Node.Step once the data is in place. The checkpoint may be
// newer than the metadata's index; that is safe (see the package doc).
//
// SendSnapshot must not block, and must always end with a call to the
// sender's Node.ReportSnapshot(m.To, raft.SnapshotFinish or
// raft.SnapshotFailure): raft stops replicating to that follower until it
// hears back.
type SnapshotSender interface {
	SendSnapshot(m raftpb.Message)
}
