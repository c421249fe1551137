package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"
)

// Limits that are not configurable: they guard the receiver against a
// misbehaving peer rather than tune the sender.
const (
	// maxSnapshotChunkBytes is the largest snapshot chunk a sender may be
	// configured with and a receiver accepts in one frame: 64 MiB.
	maxSnapshotChunkBytes = 64 << 20
	// maxSnapshotFiles is the most files one snapshot manifest may list.
	maxSnapshotFiles = 1 << 20
	// maxSnapshotFileNameBytes is the longest file name in a manifest, the
	// usual file-system limit for one path element.
	maxSnapshotFileNameBytes = 255
	// maxConcurrentSnapshotReceives is how many snapshots one Transport
	// stages at once. Only the leader sends snapshots, one at a time per
	// follower, so a second concurrent one is stale; it is refused
	// (ErrSnapshotBusy) and raft retries.
	maxConcurrentSnapshotReceives = 1
	// snapshotAckTimeout bounds the wait for the receiver's answer once the
	// whole snapshot is written: the receiver's fsyncs, the sink and
	// Raft.Process. 1 minute.
	snapshotAckTimeout = time.Minute
	// recvBufferBytes is the read buffer of one inbound stream: 64 KiB.
	recvBufferBytes = 64 << 10
	// recvPropQueueMsgs bounds the MsgProp messages of one peer waiting for
	// Raft.Process (which blocks them while there is no leader); more are
	// dropped, and the proposer's own timeout retries. etcd uses the same
	// 4096 (rafthttp maxPendingProposals).
	recvPropQueueMsgs = 4096
	// errorBodyBytes bounds how much of an error response is read for the
	// error message: 1 KiB.
	errorBodyBytes = 1 << 10
)

// Config configures a Transport. Zero fields take the default their comment
// states (WithDefaults fills them, in one place); LocalID, ClusterID and
// SnapshotDir have none.
type Config struct {
	// LocalID is this member's raft ID. Required, non-zero.
	LocalID uint64
	// ClusterID is the cluster's ID; streams and snapshots from a member of
	// another cluster are refused with ErrClusterIDMismatch. Required,
	// non-zero.
	ClusterID uint64
	// TLS, when set, secures both sides: the peer server (see
	// ConfigureServer) and the client that dials peers, which then need
	// https URLs. It needs certificates and roots for both roles. Default
	// nil: cleartext HTTP/2 (h2c) to http URLs.
	TLS *tls.Config
	// DialTimeout bounds connecting to a peer, through the TLS handshake and
	// the peer's acceptance of the stream. Default 1 s.
	DialTimeout time.Duration
	// SendQueueMsgs is each peer's queue of outbound messages. Full: the
	// message is dropped and Raft.ReportUnreachable called. Default 4096.
	SendQueueMsgs int
	// MaxBatchBytes is how many bytes of frames are coalesced into one write
	// on a stream; a single larger message is written alone. Default 1 MiB.
	MaxBatchBytes int
	// MaxMessageBytes is the largest marshaled message sent or accepted; an
	// inbound frame over it breaks the stream with ErrFrameTooLarge, an
	// outbound message over it is dropped. It must exceed raft's
	// MaxSizePerMsg plus the largest single entry. Default 16 MiB.
	MaxMessageBytes int
	// SnapshotChunkBytes is the size of one snapshot chunk, which is also the
	// one buffer a snapshot send or receive holds. At most 64 MiB. Default
	// 1 MiB.
	SnapshotChunkBytes int
	// SnapshotDir is where received snapshots are staged and installed.
	// Created if missing. Required.
	SnapshotDir string
	// ReconnectBackoffMin is the first wait before redialing a peer after a
	// failure; it doubles per consecutive failure, with jitter, up to
	// ReconnectBackoffMax. Default 100 ms.
	ReconnectBackoffMin time.Duration
	// ReconnectBackoffMax caps the redial wait. Default 5 s.
	ReconnectBackoffMax time.Duration
	// PingInterval is how often an idle-or-busy stream sends a ping; the
	// pong gives the round-trip time in Stats. Default 1 s.
	PingInterval time.Duration
	// IdleTimeout closes a stream that has not heard a pong, or an inbound
	// stream or snapshot that has not received a byte, for this long, and
	// aborts a write that blocks this long. Must exceed PingInterval.
	// Default 5 s (etcd's rafthttp connection read/write timeout).
	IdleTimeout time.Duration
	// IsRemoved reports whether member id was removed from the cluster. A
	// stream or snapshot from a removed member is refused with
	// ErrMemberRemoved (HTTP 410), which tells it to stop; any other
	// unknown member gets ErrUnknownPeer (it may be new and not yet known
	// here). It must not block. Default nil: no member is removed.
	IsRemoved func(id uint64) bool
	// OnRemoved is called, from a transport goroutine and possibly more
	// than once, when a peer refuses this member's stream with
	// ErrMemberRemoved: this member was removed from the cluster (it may
	// never have applied its own removal, which commits without it) and
	// should stop. It must not wait for Stop. Default nil: ignored.
	OnRemoved func()
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = time.Second
	}
	if c.SendQueueMsgs == 0 {
		c.SendQueueMsgs = 4096
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 1 << 20
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 16 << 20
	}
	if c.SnapshotChunkBytes == 0 {
		c.SnapshotChunkBytes = 1 << 20
	}
	if c.ReconnectBackoffMin == 0 {
		c.ReconnectBackoffMin = 100 * time.Millisecond
	}
	if c.ReconnectBackoffMax == 0 {
		c.ReconnectBackoffMax = 5 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Second
	}
	return c
}

// Validate reports every violation in c, joined, each wrapping
// ErrInvalidConfig. It does not fill defaults: call WithDefaults first.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.LocalID == 0 {
		bad("LocalID is 0")
	}
	if c.ClusterID == 0 {
		bad("ClusterID is 0")
	}
	if c.SnapshotDir == "" {
		bad("SnapshotDir is empty")
	}
	if c.DialTimeout <= 0 {
		bad("DialTimeout %v is not positive", c.DialTimeout)
	}
	if c.SendQueueMsgs <= 0 {
		bad("SendQueueMsgs %d is not positive", c.SendQueueMsgs)
	}
	if c.MaxBatchBytes <= 0 {
		bad("MaxBatchBytes %d is not positive", c.MaxBatchBytes)
	}
	if c.MaxMessageBytes <= 0 {
		bad("MaxMessageBytes %d is not positive", c.MaxMessageBytes)
	}
	if c.SnapshotChunkBytes <= 0 || c.SnapshotChunkBytes > maxSnapshotChunkBytes {
		bad("SnapshotChunkBytes %d is outside (0, %d]", c.SnapshotChunkBytes, maxSnapshotChunkBytes)
	}
	if c.ReconnectBackoffMin <= 0 {
		bad("ReconnectBackoffMin %v is not positive", c.ReconnectBackoffMin)
	}
	if c.ReconnectBackoffMax < c.ReconnectBackoffMin {
		bad("ReconnectBackoffMax %v is below ReconnectBackoffMin %v", c.ReconnectBackoffMax, c.ReconnectBackoffMin)
	}
	if c.PingInterval <= 0 {
		bad("PingInterval %v is not positive", c.PingInterval)
	}
	if c.IdleTimeout <= c.PingInterval {
		bad("IdleTimeout %v does not exceed PingInterval %v", c.IdleTimeout, c.PingInterval)
	}
	return errors.Join(errs...)
}
