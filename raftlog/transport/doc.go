// Package transport carries raft messages and snapshots between MetaStore
// members over their peer URLs.
//
// The wire is HTTP/2: cleartext h2c ("prior knowledge", no upgrade) when
// Config.TLS is nil, HTTP/2 over TLS otherwise, both from the standard
// library's net/http (Go 1.24+ http.Protocols), so the package needs no gRPC
// codec or service descriptor and its Handler mounts under /raft/ on the
// same peer listener as any other peer endpoint, as etcd's rafthttp does.
// HTTP/2 gives a full-duplex request per stream, which is all a raft stream
// needs: the sender writes frames into the request body, the receiver
// answers pings on the response body. gRPC would add a hand-written service
// descriptor, a bytes codec, its own message-size limits and a second
// server beside the peer mux, for the same HTTP/2 stream underneath. The
// peer http.Server must be set up with ConfigureServer (it enables h2c);
// otherwise dials fail with ErrNotHTTP2.
//
// Liveness: the sender pings every Config.PingInterval; the pong gives
// PeerStats.RTT. A stream on which, for Config.IdleTimeout, no pong arrived
// and no write went through (HTTP/2 flow control passes writes only as the
// peer reads) is closed and redialed, as is an inbound stream or snapshot
// that received nothing for that long. ActiveSince is the time the current
// outbound stream was accepted, zero while there is none.
//
// Endpoints (all POST, all checked for protocol version, cluster ID, target
// member ID and a known sender before any byte of the body is read):
//
//	/raft/stream    one long-lived stream per ordered pair of members,
//	                opened by the sender; body = frames of marshaled
//	                raftpb.Message, batched up to Config.MaxBatchBytes per
//	                write, plus pings; response body = pongs.
//	/raft/snapshot  one request per MsgSnap; body = the MsgSnap, a manifest
//	                (file names and sizes, xxhash64 of the manifest), each
//	                file in chunks of Config.SnapshotChunkBytes followed by its
//	                xxhash64, an end frame. Sent on its own HTTP/2 client (its
//	                own TCP connection), so MsgApp and heartbeats never queue
//	                behind snapshot bytes.
//
// Contract:
//
//   - Send never blocks. A message goes into its peer's bounded queue
//     (Config.SendQueueMsgs); when the queue is full it is dropped and
//     Raft.ReportUnreachable is called, as raft expects: raft retries. A
//     message may be lost at any point (a broken stream loses the batch in
//     flight), never duplicated, and messages to one peer that arrive arrive
//     in Send order.
//   - Raft.Process is called from the goroutine serving a peer's inbound
//     stream, so calls for one peer are sequential and in stream order, and
//     calls for different peers are concurrent. MsgProp is handed to a
//     per-peer goroutine instead, because raft.Node.Step blocks a proposal
//     while there is no leader and must not stall heartbeats behind it.
//   - Raft.ReportUnreachable and Raft.ReportSnapshot are called from Send
//     (on a full queue or an in-flight snapshot) and from transport
//     goroutines; they must not wait for the goroutine that calls Send.
//     raft.Node's methods satisfy this.
//   - A MsgSnap ends in exactly one Raft.ReportSnapshot on the sender:
//     SnapshotFinish once the receiver has staged, verified and fsynced the
//     snapshot and its Raft.Process accepted the message, SnapshotFailure
//     otherwise. At most one snapshot per peer is in flight.
//   - A received snapshot directory is visible under Config.SnapshotDir only
//     complete: it is written to <term>-<index>.tmp, every file is checked
//     against its xxhash64 and fsynced, the directory is fsynced and renamed
//     to <term>-<index>, and Config.SnapshotDir is fsynced, before
//     SnapshotSink.SnapshotReceived and then Raft.Process see it. New removes
//     any *.tmp left by a crash. Complete directories belong to the sink.
//   - After Stop returns, no goroutine of the Transport runs and none of its
//     handlers will call Raft or the sink again.
//
// Every queue, buffer and frame is bounded; the bounds are Config fields or
// named constants with their unit (see config.go and frame.go).
//
// Faults (faults.go) inject drop, delay, blackhole and snapshot corruption
// at the transport's edges for tests; with no fault configured they cost one
// atomic load per message.
package transport
