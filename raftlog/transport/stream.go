package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// errRedial ends a stream whose URL was removed by UpdatePeer.
var errRedial = errors.New("transport: peer URLs changed")

// errNoURL is a dial of a peer with no usable URL.
var errNoURL = errors.New("transport: peer has no usable URL")

// runStream keeps one outbound stream to the peer: dial, write until the
// stream breaks, wait a backoff, redial, until the peer stops. Every failure
// is reported to raft as ReportUnreachable.
func (p *peer) runStream() {
	defer p.wg.Done()
	bo := backoff{min: p.t.cfg.ReconnectBackoffMin, max: p.t.cfg.ReconnectBackoffMax}
	for {
		connected, err := p.connectAndStream()
		if p.ctx.Err() != nil {
			return
		}
		if changed := p.setDisconnected(err); changed {
			p.lg.Warn("peer stream down", zap.Bool("was-connected", connected), zap.Error(err))
		} else {
			p.lg.Debug("peer stream down", zap.Bool("was-connected", connected), zap.Error(err))
		}
		p.t.raft.ReportUnreachable(p.id)
		if errors.Is(err, ErrMemberRemoved) && p.t.cfg.OnRemoved != nil {
			p.t.cfg.OnRemoved()
		}
		if connected {
			bo.reset()
		}
		if !sleep(p.ctx, bo.next()) {
			return
		}
	}
}

// connectAndStream dials the peer and writes its queue to the stream until
// the stream fails; connected tells whether the dial succeeded.
func (p *peer) connectAndStream() (connected bool, err error) {
	if p.t.faults.blackholedTo(p.id) {
		return false, ErrBlackholed
	}
	url := p.currentURL()
	if url == "" {
		return false, errNoURL
	}
	s, err := p.dial(url)
	if err != nil {
		p.rotateURL(url)
		return false, err
	}
	defer s.close()
	p.setConnected()
	p.lg.Debug("peer stream up", zap.String("url", url))
	return true, p.writeLoop(s)
}

// outStream is one established outbound stream: the request body we write
// frames into and the response body a goroutine reads pongs from.
type outStream struct {
	p      *peer
	pw     *io.PipeWriter
	body   io.ReadCloser // response body
	cancel context.CancelFunc
	// writeTimer aborts a write that blocks longer than IdleTimeout.
	writeTimer *time.Timer
	// lastAlive is when the peer last showed it is there, in nanoseconds
	// since the transport's epoch: a pong arrived, or a write completed
	// (HTTP/2 flow control lets a write through only as the peer reads).
	// A pong alone would not do: it queues behind every frame before its
	// ping, so a peer busy working off a backlog looks dead.
	lastAlive atomic.Int64
	// done is closed when the pong reader exits; err is why (set before).
	done     chan struct{}
	err      error
	closeErr sync.Once
}

// dial opens a stream to url: the request is accepted once the peer
// answered 200, which it does after checking our headers.
func (p *peer) dial(url string) (*outStream, error) {
	cfg := &p.t.cfg
	ctx, cancel := context.WithCancel(p.ctx)
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+streamPath, pr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("transport: stream request to %s: %w", url, err)
	}
	p.t.setRequestHeaders(req.Header, p.id)
	// The dial timeout covers TCP, TLS and the peer's answer, all of which
	// happen inside RoundTrip.
	dialTimer := time.AfterFunc(cfg.DialTimeout, cancel)
	resp, err := p.t.streamRT.RoundTrip(req)
	timedOut := !dialTimer.Stop()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errorFromResponse(resp)
		_ = resp.Body.Close()
	}
	if err == nil && timedOut {
		err = ctx.Err()
		_ = resp.Body.Close()
	}
	if err != nil {
		cancel()
		_ = pw.CloseWithError(err)
		if isHTTP1Answer(err) {
			err = fmt.Errorf("%w: %s: %v", ErrNotHTTP2, url, err)
		}
		if timedOut && p.ctx.Err() == nil {
			err = fmt.Errorf("%w after %v: %s: %v", ErrDialTimeout, cfg.DialTimeout, url, err)
		}
		return nil, err
	}
	s := &outStream{p: p, pw: pw, body: resp.Body, cancel: cancel, done: make(chan struct{})}
	s.writeTimer = time.AfterFunc(time.Hour, func() { _ = pw.CloseWithError(ErrWriteTimeout) })
	s.writeTimer.Stop()
	s.lastAlive.Store(int64(time.Since(p.t.epoch)))
	go s.readPongs()
	return s, nil
}

// isHTTP1Answer recognizes the HTTP/2 client's error for a server that
// answered in HTTP/1.1 (net/http has no sentinel for it).
func isHTTP1Answer(err error) bool {
	return strings.Contains(err.Error(), "looked like an HTTP/1.1 header")
}

// readPongs reads the response body: pongs, each giving an RTT sample.
func (s *outStream) readPongs() {
	fr := newFrameReader(s.body, maxControlFrameBytes)
	var err error
	for {
		var t frameType
		var b []byte
		t, b, err = fr.next()
		if err != nil {
			break
		}
		if t != framePong || len(b) != pingPayloadBytes {
			err = fmt.Errorf("%w: type %d, %d bytes on a response stream", ErrBadFrame, t, len(b))
			break
		}
		now := int64(time.Since(s.p.t.epoch))
		sent := int64(binary.BigEndian.Uint64(b))
		s.p.counters.rttNanos.Store(now - sent)
		s.p.counters.bytesReceived.Add(uint64(frameHeaderBytes + len(b)))
		s.lastAlive.Store(now)
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the receiver never ends a stream on its own
	}
	s.err = err
	close(s.done)
}

// write writes b to the stream, failing with ErrWriteTimeout if the write
// blocks for IdleTimeout (the peer stopped reading).
func (s *outStream) write(b []byte) error {
	s.writeTimer.Reset(s.p.t.cfg.IdleTimeout)
	_, err := s.pw.Write(b)
	if !s.writeTimer.Stop() {
		err = ErrWriteTimeout // the Write itself saw a closed pipe
	}
	if err != nil {
		return err
	}
	s.lastAlive.Store(int64(time.Since(s.p.t.epoch)))
	s.p.counters.bytesSent.Add(uint64(len(b)))
	return nil
}

// close ends the stream and waits for its pong reader.
func (s *outStream) close() {
	s.closeErr.Do(func() {
		s.writeTimer.Stop()
		s.cancel()
		_ = s.pw.CloseWithError(ErrStopped)
		_ = s.body.Close()
		<-s.done
	})
}

// ping writes a ping, unless the stream should end: blackholed, or nothing
// heard from the peer for IdleTimeout.
func (p *peer) ping(s *outStream, buf []byte) error {
	if p.t.faults.blackholedTo(p.id) {
		return ErrBlackholed
	}
	now := time.Since(p.t.epoch)
	if idle := now - time.Duration(s.lastAlive.Load()); idle > p.t.cfg.IdleTimeout {
		return fmt.Errorf("%w: no pong or write for %v", ErrPeerIdle, idle.Round(time.Millisecond))
	}
	buf = appendFrameHeader(buf[:0], framePing, pingPayloadBytes)
	buf = binary.BigEndian.AppendUint64(buf, uint64(now))
	return s.write(buf)
}

// writeLoop writes the peer's queue to s in batches, and pings, until the
// stream fails or the peer stops.
//
// A batch is the first waiting message plus every message already queued
// behind it, up to MaxBatchBytes of frames; one oversized message is a batch
// of its own. A message whose Faults delay has not passed ends the batch and
// is held until it is due (so delays never reorder messages).
func (p *peer) writeLoop(s *outStream) error {
	cfg := &p.t.cfg
	ticker := time.NewTicker(cfg.PingInterval)
	defer ticker.Stop()
	var pingBuf [frameHeaderBytes + pingPayloadBytes]byte
	if err := p.ping(s, pingBuf[:]); err != nil {
		return err
	}
	var (
		batch []byte
		held  *outMsg // taken from the queue, not yet written
		due   *time.Timer
	)
	defer func() {
		if due != nil {
			due.Stop()
		}
	}()
	for {
		// Under sustained load every batch ends full and leaves a message
		// held, so the blocking select below is skipped: poll here too.
		select {
		case <-p.ctx.Done():
			return ErrStopped
		case <-s.done:
			return s.err
		case <-p.redial:
			return errRedial
		case <-ticker.C:
			if err := p.ping(s, pingBuf[:]); err != nil {
				return err
			}
		default:
		}
		if held == nil {
			select {
			case <-p.ctx.Done():
				return ErrStopped
			case <-s.done:
				return s.err
			case <-p.redial:
				return errRedial
			case <-ticker.C:
				if err := p.ping(s, pingBuf[:]); err != nil {
					return err
				}
				continue
			case om := <-p.queue:
				held = &om
			}
		}
		if wait := time.Until(held.due); !held.due.IsZero() && wait > 0 {
			if due == nil {
				due = time.NewTimer(wait)
			} else {
				due.Reset(wait)
			}
			select {
			case <-p.ctx.Done():
				return ErrStopped
			case <-s.done:
				return s.err
			case <-p.redial:
				return errRedial
			case <-ticker.C:
				if err := p.ping(s, pingBuf[:]); err != nil {
					return err
				}
				continue // due is Reset on the next pass
			case <-due.C:
			}
		}

		batch = batch[:0]
		n := 0
		for held != nil {
			size := held.m.Size()
			if size > cfg.MaxMessageBytes {
				p.counters.msgsDropped.Add(1)
				p.lg.Error("dropped message over MaxMessageBytes",
					zap.Stringer("type", held.m.Type), zap.Int("size-bytes", size),
					zap.Int("max-message-bytes", cfg.MaxMessageBytes))
			} else {
				if n > 0 && len(batch)+frameHeaderBytes+size > cfg.MaxBatchBytes {
					break // held starts the next batch
				}
				batch = appendMsgFrame(batch, frameMsg, &held.m)
				n++
			}
			held = nil
			select {
			case om := <-p.queue:
				held = &om
			default:
			}
			if held != nil && !held.due.IsZero() && time.Now().Before(held.due) {
				break // not due yet: it waits for the next pass
			}
		}
		if n > 0 {
			if err := s.write(batch); err != nil {
				return err
			}
			p.counters.writes.Add(1)
			p.counters.msgsSent.Add(uint64(n))
		}
		if cap(batch) > 2*cfg.MaxBatchBytes {
			batch = nil // one huge message grew it; do not keep the memory
		}
	}
}

// deadlines manages the deadlines of one inbound request: the read
// deadline moves forward as frames arrive, and abort (from any goroutine)
// pulls both to now so a blocked read or write returns. After abort nothing
// moves them again. The handler calls finish before it returns, after which
// abort does nothing: a ResponseWriter must not be used once its handler
// returned.
type deadlines struct {
	rc   *http.ResponseController
	idle time.Duration
	mu   struct {
		sync.Mutex
		aborted  bool
		finished bool
		setAt    time.Time
	}
}

func newDeadlines(w http.ResponseWriter, idle time.Duration) *deadlines {
	return &deadlines{rc: http.NewResponseController(w), idle: idle}
}

// finish ends the use of the ResponseWriter.
func (d *deadlines) finish() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.finished = true
}

// extendRead pushes the read deadline to IdleTimeout from now. Setting a
// deadline is an HTTP/2 serve-loop round trip, so it is renewed only once a
// quarter of the timeout has passed: the deadline stays between 3/4 and all
// of IdleTimeout ahead.
func (d *deadlines) extendRead() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.aborted {
		return ErrStopped
	}
	now := time.Now()
	if now.Sub(d.mu.setAt) < d.idle/4 {
		return nil
	}
	d.mu.setAt = now
	if err := d.rc.SetReadDeadline(now.Add(d.idle)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// setWrite sets the write deadline to IdleTimeout from now, or clears it
// if on is false. A write deadline is armed only around a write: left
// armed, it would reset the stream once it passed, however busy the stream.
func (d *deadlines) setWrite(on bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.aborted {
		return ErrStopped
	}
	var deadline time.Time
	if on {
		deadline = time.Now().Add(d.idle)
	}
	if err := d.rc.SetWriteDeadline(deadline); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (d *deadlines) abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.aborted = true
	if d.mu.finished {
		return
	}
	now := time.Now()
	_ = d.rc.SetReadDeadline(now)
	_ = d.rc.SetWriteDeadline(now)
}

// serveStream serves a peer's outbound stream: it reads frames, delivers
// messages to raft in order and answers pings, until the stream ends, the
// peer opens a newer stream, or the peer or transport stops.
func (t *Transport) serveStream(w http.ResponseWriter, r *http.Request) {
	p, code, err := t.admit(r)
	if err != nil {
		writeError(w, err, code)
		return
	}
	d := newDeadlines(w, t.cfg.IdleTimeout)
	defer d.finish()
	if !p.attachInbound(d) {
		writeError(w, ErrUnknownPeer, http.StatusNotFound)
		return
	}
	defer p.detachInbound(d)
	stop := context.AfterFunc(p.ctx, d.abort)
	defer stop()

	w.WriteHeader(http.StatusOK)
	if err := d.rc.Flush(); err != nil {
		p.lg.Error("cannot flush stream response; is the peer server HTTP/2 and the handler unwrapped?", zap.Error(err))
		return
	}
	err = t.readStream(p, d, w, r.Body)
	if p.ctx.Err() == nil && !errors.Is(err, io.EOF) {
		p.lg.Debug("inbound stream ended", zap.Error(err))
	}
}

func (t *Transport) readStream(p *peer, d *deadlines, w io.Writer, body io.Reader) error {
	fr := newFrameReader(body, t.cfg.MaxMessageBytes)
	var pong [frameHeaderBytes + pingPayloadBytes]byte
	for {
		if err := d.extendRead(); err != nil {
			return err
		}
		typ, b, err := fr.next()
		if err != nil {
			return err
		}
		p.counters.bytesReceived.Add(uint64(frameHeaderBytes + len(b)))
		if t.faults.blackholedFrom(p.id) {
			return ErrBlackholed
		}
		switch typ {
		case frameMsg:
			var m raftpb.Message
			if err := m.Unmarshal(b); err != nil {
				return fmt.Errorf("%w: unmarshal message: %v", ErrBadFrame, err)
			}
			if m.From != p.id || m.To != t.cfg.LocalID {
				return fmt.Errorf("%w: message %x->%x on the stream %s->%s",
					ErrBadFrame, m.From, m.To, p.idStr, idString(t.cfg.LocalID))
			}
			p.deliver(m)
		case framePing:
			if len(b) != pingPayloadBytes {
				return fmt.Errorf("%w: ping of %d bytes", ErrBadFrame, len(b))
			}
			out := append(appendFrameHeader(pong[:0], framePong, len(b)), b...)
			if err := d.setWrite(true); err != nil {
				return err
			}
			if _, err := w.Write(out); err != nil {
				return err
			}
			if err := d.rc.Flush(); err != nil {
				return err
			}
			if err := d.setWrite(false); err != nil {
				return err
			}
			p.counters.bytesSent.Add(uint64(len(out)))
		default:
			return fmt.Errorf("%w: type %d on a message stream", ErrBadFrame, typ)
		}
	}
}
