package transport

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// PeerStats are one peer's counters since AddPeer.
type PeerStats struct {
	// URL is the URL the stream uses or will dial next.
	URL string
	// ActiveSince is when the outbound stream was established; zero while
	// it is not connected.
	ActiveSince time.Time
	// LastError is the error that ended the last dial or stream; nil after
	// a successful dial.
	LastError error
	// RTT is the round-trip time of the latest ping on the stream; 0 before
	// the first pong.
	RTT time.Duration

	MsgsSent     uint64 // messages written to the stream
	MsgsReceived uint64 // messages read from the peer's stream
	// MsgsDropped counts messages dropped on a full send queue or for
	// exceeding MaxMessageBytes; MsgsFaultDropped those dropped by Faults;
	// PropsDropped inbound MsgProp dropped on a full proposal queue.
	MsgsDropped      uint64
	MsgsFaultDropped uint64
	PropsDropped     uint64
	// Writes counts batches written to the stream (pings not included);
	// MsgsSent/Writes is the batching factor.
	Writes uint64
	// BytesSent and BytesReceived count frame bytes, snapshots included.
	BytesSent     uint64
	BytesReceived uint64

	SnapshotsSent     uint64 // snapshots the peer confirmed
	SnapshotsFailed   uint64 // snapshot sends that ended in SnapshotFailure
	SnapshotsReceived uint64 // snapshots received from the peer and installed
}

// peerCounters are the atomic counters behind PeerStats.
type peerCounters struct {
	msgsSent, msgsReceived                          atomic.Uint64
	msgsDropped, msgsFaultDropped, propsDropped     atomic.Uint64
	writes, bytesSent, bytesReceived                atomic.Uint64
	snapshotsSent, snapshotsFailed, snapshotsRecved atomic.Uint64
	rttNanos                                        atomic.Int64
}

// outMsg is a queued outbound message.
type outMsg struct {
	m raftpb.Message
	// due is when a Faults delay lets the message go; zero for now.
	due time.Time
}

// peer is one remote member: its outbound queue and stream, its snapshot
// sender, and the bookkeeping of its inbound stream.
//
// Goroutines: runStream (dial, write, redial) and runProposals run from
// start to stop; a snapshot send runs while one is in flight. stop cancels
// ctx and waits for all of them.
type peer struct {
	t     *Transport
	id    uint64
	idStr string
	lg    *zap.Logger

	// queue holds outbound messages; capacity Config.SendQueueMsgs.
	queue chan outMsg
	// propc holds inbound MsgProp for runProposals; capacity
	// recvPropQueueMsgs.
	propc chan raftpb.Message
	// redial asks runStream to drop its stream (the URLs changed);
	// capacity 1, sends never block.
	redial chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// snapshotInFlight is set while a snapshot send runs.
	snapshotInFlight atomic.Bool
	counters         peerCounters

	mu struct {
		sync.Mutex
		urls        []string
		urlIndex    int // the URL to dial next
		activeSince time.Time
		lastErr     error
		// inbound is the peer's current inbound stream; a new one aborts it.
		inbound *deadlines
		stopped bool
	}
}

func newPeer(t *Transport, id uint64, urls []string) *peer {
	p := &peer{
		t:      t,
		id:     id,
		idStr:  idString(id),
		queue:  make(chan outMsg, t.cfg.SendQueueMsgs),
		propc:  make(chan raftpb.Message, recvPropQueueMsgs),
		redial: make(chan struct{}, 1),
	}
	p.lg = t.lg.With(zap.String("remote-peer-id", p.idStr))
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	p.mu.urls = urls
	return p
}

func (p *peer) start() {
	p.wg.Add(2)
	go p.runStream()
	go p.runProposals()
}

// stop cancels the peer's work and waits for its goroutines.
func (p *peer) stop() {
	p.mu.Lock()
	p.mu.stopped = true
	in := p.mu.inbound
	p.mu.Unlock()
	p.cancel()
	if in != nil {
		in.abort()
	}
	p.wg.Wait()
}

// goTracked runs f on a goroutine that stop waits for, unless the peer
// stopped, and reports whether it did.
func (p *peer) goTracked(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.stopped {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// enqueue queues m, to be written after delay. It reports false if the
// queue is full.
func (p *peer) enqueue(m *raftpb.Message, delay time.Duration) bool {
	om := outMsg{m: *m}
	if delay > 0 {
		om.due = time.Now().Add(delay)
	}
	select {
	case p.queue <- om:
		return true
	default:
		return false
	}
}

// runProposals steps inbound MsgProp, which raft blocks while it has no
// leader, off the stream's goroutine.
func (p *peer) runProposals() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case m := <-p.propc:
			if err := p.t.raft.Process(p.ctx, m); err != nil && p.ctx.Err() == nil {
				p.lg.Warn("raft refused proposal", zap.Error(err))
			}
		}
	}
}

// deliver hands an inbound message to raft (see the package doc).
func (p *peer) deliver(m raftpb.Message) {
	p.counters.msgsReceived.Add(1)
	if m.Type == raftpb.MsgProp {
		select {
		case p.propc <- m:
		default:
			if p.counters.propsDropped.Add(1)%recvPropQueueMsgs == 1 {
				p.lg.Warn("dropped inbound proposals: proposal queue full",
					zap.Int("recv-prop-queue-msgs", recvPropQueueMsgs))
			}
		}
		return
	}
	if err := p.t.raft.Process(p.ctx, m); err != nil && p.ctx.Err() == nil {
		p.lg.Warn("raft refused message", zap.Stringer("type", m.Type), zap.Error(err))
	}
}

// attachInbound makes in the peer's inbound stream, aborting the previous
// one: a peer has at most one inbound stream. It reports false if the peer
// stopped.
func (p *peer) attachInbound(in *deadlines) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.stopped {
		return false
	}
	if p.mu.inbound != nil {
		p.mu.inbound.abort()
	}
	p.mu.inbound = in
	return true
}

func (p *peer) detachInbound(in *deadlines) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.inbound == in {
		p.mu.inbound = nil
	}
}

// setURLs replaces the peer's URLs; if the URL in use is gone, the stream
// is redialed.
func (p *peer) setURLs(urls []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Equal(urls, p.mu.urls) {
		return
	}
	cur := p.currentURLLocked()
	p.mu.urls = urls
	p.mu.urlIndex = max(0, slices.Index(urls, cur))
	if !slices.Contains(urls, cur) {
		select {
		case p.redial <- struct{}{}:
		default:
		}
	}
}

// currentURL returns the URL to dial, or "" if the peer has none.
func (p *peer) currentURL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.currentURLLocked()
}

// REQUIRES: p.mu held.
func (p *peer) currentURLLocked() string {
	if len(p.mu.urls) == 0 {
		return ""
	}
	return p.mu.urls[p.mu.urlIndex%len(p.mu.urls)]
}

// rotateURL moves to the peer's next URL after url failed.
func (p *peer) rotateURL(url string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.currentURLLocked() == url {
		p.mu.urlIndex++
	}
}

func (p *peer) setConnected() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.activeSince = time.Now()
	p.mu.lastErr = nil
}

// setDisconnected records err and reports whether it differs from the
// previous error (to log a change once, not every redial).
func (p *peer) setDisconnected(err error) (changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.activeSince = time.Time{}
	changed = p.mu.lastErr == nil || p.mu.lastErr.Error() != err.Error()
	p.mu.lastErr = err
	return changed
}

func (p *peer) activeSince() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.activeSince
}

func (p *peer) stats() PeerStats {
	c := &p.counters
	s := PeerStats{
		RTT:               time.Duration(c.rttNanos.Load()),
		MsgsSent:          c.msgsSent.Load(),
		MsgsReceived:      c.msgsReceived.Load(),
		MsgsDropped:       c.msgsDropped.Load(),
		MsgsFaultDropped:  c.msgsFaultDropped.Load(),
		PropsDropped:      c.propsDropped.Load(),
		Writes:            c.writes.Load(),
		BytesSent:         c.bytesSent.Load(),
		BytesReceived:     c.bytesReceived.Load(),
		SnapshotsSent:     c.snapshotsSent.Load(),
		SnapshotsFailed:   c.snapshotsFailed.Load(),
		SnapshotsReceived: c.snapshotsRecved.Load(),
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s.URL = p.currentURLLocked()
	s.ActiveSince = p.mu.activeSince
	s.LastError = p.mu.lastErr
	return s
}

// backoff computes redial waits: doubling from min to max per consecutive
// failure, each wait drawn uniformly from its upper half ("equal jitter"),
// so members that lost a peer together do not redial in lockstep.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
