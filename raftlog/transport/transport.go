package transport

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// Raft is the local raft node, as the transport sees it.
type Raft interface {
	// Process steps a message received from a peer. ctx is cancelled when
	// the peer is removed or the transport stops. See the package doc for
	// which goroutine calls it.
	Process(ctx context.Context, m raftpb.Message) error
	// ReportUnreachable tells raft that messages to id may have been lost.
	ReportUnreachable(id uint64)
	// ReportSnapshot tells raft how sending a MsgSnap to id ended.
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// SnapshotSource opens the snapshot data a MsgSnap refers to. Implemented by
// the server.
type SnapshotSource interface {
	// OpenSnapshot returns a directory of regular files (an engine
	// checkpoint) to stream for m, and a release func the transport calls
	// exactly once when sending ends, however it ends. The files must not
	// change until release. It runs on a transport goroutine, never on
	// Send's caller, and may take its time.
	OpenSnapshot(m raftpb.Message) (dir string, release func(), err error)
}

// SnapshotSink takes delivery of received snapshots. Implemented by the
// server.
type SnapshotSink interface {
	// SnapshotReceived is called once a snapshot directory was fully
	// received, verified, fsynced and renamed into place as
	// Config.SnapshotDir/<term>-<index>; then the transport passes m to
	// Raft.Process. From this call on dir belongs to the sink: the transport
	// touches it again only to replace it if the same term and index is
	// received again. An error refuses the snapshot: the sender hears
	// SnapshotFailure and dir is removed. It should only record dir (the
	// snapshot is applied when raft hands m.Snapshot back to the node); the
	// sender waits at most a minute for the whole answer.
	SnapshotReceived(m raftpb.Message, dir string) error
}

// Transport sends and receives raft traffic for one member. All methods are
// safe for concurrent use.
type Transport struct {
	cfg    Config
	lg     *zap.Logger
	raft   Raft
	src    SnapshotSource
	sink   SnapshotSink
	faults *Faults
	// epoch is the zero of ping timestamps (monotonic).
	epoch time.Time

	// streamRT carries message streams; snapshotRT carries snapshots on
	// connections of its own, so a snapshot never holds up a heartbeat in
	// a shared TCP send buffer or HTTP/2 connection window.
	streamRT   *http.Transport
	snapshotRT *http.Transport

	handler http.Handler
	// snapshotSlots holds a token per snapshot being received; its capacity
	// is maxConcurrentSnapshotReceives.
	snapshotSlots chan struct{}

	// ctx is cancelled by Stop; every peer's context derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	// handlers counts requests inside Handler. Add only under mu while
	// !mu.stopped, so Stop's Wait never races an Add from zero.
	handlers sync.WaitGroup

	mu struct {
		sync.Mutex
		peers   map[uint64]*peer
		stopped bool
	}
}

// New returns a Transport for cfg (defaults filled, then validated) that
// delivers to r and reads and writes snapshots through src and sink. It
// creates cfg.SnapshotDir if needed and removes every *.tmp directory in it:
// those are snapshots a crash interrupted, which the leader will send again.
// lg may be nil.
func New(cfg Config, r Raft, src SnapshotSource, sink SnapshotSink, lg *zap.Logger) (*Transport, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if r == nil || src == nil || sink == nil {
		return nil, fmt.Errorf("%w: Raft, SnapshotSource and SnapshotSink are all required", ErrInvalidConfig)
	}
	if lg == nil {
		lg = zap.NewNop()
	}
	lg = lg.With(zap.String("local-member-id", idString(cfg.LocalID)))
	if err := os.MkdirAll(cfg.SnapshotDir, 0o700); err != nil {
		return nil, fmt.Errorf("transport: create snapshot dir: %w", err)
	}
	if err := removePartialSnapshots(cfg.SnapshotDir, lg); err != nil {
		return nil, err
	}
	t := &Transport{
		cfg:           cfg,
		lg:            lg,
		raft:          r,
		src:           src,
		sink:          sink,
		faults:        newFaults(),
		epoch:         time.Now(),
		streamRT:      newRoundTripper(cfg),
		snapshotRT:    newRoundTripper(cfg),
		snapshotSlots: make(chan struct{}, maxConcurrentSnapshotReceives),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.peers = map[uint64]*peer{}

	mux := http.NewServeMux()
	mux.HandleFunc("POST "+streamPath, t.serveStream)
	mux.HandleFunc("POST "+snapshotPath, t.serveSnapshot)
	t.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !t.enterHandler() {
			writeError(w, ErrStopped, http.StatusServiceUnavailable)
			return
		}
		defer t.handlers.Done()
		mux.ServeHTTP(w, r)
	})
	return t, nil
}

// Paths the Handler serves.
const (
	streamPath   = "/raft/stream"
	snapshotPath = "/raft/snapshot"
)

// removePartialSnapshots removes dir/*.tmp directories.
func removePartialSnapshots(dir string, lg *zap.Logger) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("transport: read snapshot dir: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("transport: remove partial snapshot: %w", err)
		}
		lg.Info("removed partially received snapshot", zap.String("path", path))
	}
	return nil
}

// newRoundTripper returns an HTTP/2-only client transport: h2c with prior
// knowledge when cfg.TLS is nil, h2 over TLS otherwise. HTTP/1.1 is never
// used: a stream needs a full-duplex request.
func newRoundTripper(cfg Config) *http.Transport {
	var protocols http.Protocols
	if cfg.TLS == nil {
		protocols.SetUnencryptedHTTP2(true)
	} else {
		protocols.SetHTTP2(true)
	}
	return &http.Transport{
		Protocols:           &protocols,
		TLSClientConfig:     cfg.TLS.Clone(),
		DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext,
		TLSHandshakeTimeout: cfg.DialTimeout,
		// Connection-level pings find a dead TCP connection under a
		// snapshot, which has no pings of its own.
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: cfg.IdleTimeout,
			PingTimeout:     cfg.IdleTimeout,
		},
	}
}

// ConfigureServer prepares the http.Server of the peer listener that serves
// Handler: it enables HTTP/2 (cleartext h2c when Config.TLS is nil, beside
// HTTP/1.1 for other peer endpoints) and, with TLS, sets srv.TLSConfig if it
// is nil. Serve with srv.Serve, or srv.ServeTLS(l, "", "") with TLS, after
// calling it. The server must not set ReadTimeout or WriteTimeout: streams
// are long-lived and the transport bounds idleness itself.
func (t *Transport) ConfigureServer(srv *http.Server) {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	if t.cfg.TLS == nil {
		protocols.SetUnencryptedHTTP2(true)
	} else if srv.TLSConfig == nil {
		srv.TLSConfig = t.cfg.TLS.Clone()
	}
	srv.Protocols = &protocols
	if srv.HTTP2 == nil {
		srv.HTTP2 = &http.HTTP2Config{
			SendPingTimeout: t.cfg.IdleTimeout,
			PingTimeout:     t.cfg.IdleTimeout,
		}
	}
}

// Handler returns the handler of the transport's endpoints, all under
// /raft/. Mount it on the peer listener's mux at "/raft/", unwrapped or
// behind wrappers whose ResponseWriter implements Unwrap (it needs
// http.ResponseController's Flush and deadlines).
func (t *Transport) Handler() http.Handler { return t.handler }

// enterHandler admits a request unless the transport stopped.
func (t *Transport) enterHandler() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.stopped {
		return false
	}
	t.handlers.Add(1)
	return true
}

// Faults returns the transport's fault injector.
func (t *Transport) Faults() *Faults { return t.faults }

// Send queues msgs for their peers and returns at once. A message to an
// unknown peer is dropped. A MsgSnap starts a snapshot send of its own. A
// message that finds its peer's queue full is dropped, and raft hears
// ReportUnreachable once per peer per call.
func (t *Transport) Send(msgs []raftpb.Message) {
	var reported []uint64 // peers already reported unreachable by this call
	for i := range msgs {
		m := &msgs[i]
		p := t.peer(m.To)
		if p == nil {
			t.lg.Debug("dropped message to unknown peer",
				zap.String("remote-peer-id", idString(m.To)), zap.Stringer("type", m.Type))
			continue
		}
		drop, delay := t.faults.outbound(m.To)
		if m.Type == raftpb.MsgSnap {
			p.sendSnapshot(*m, drop, delay)
			continue
		}
		if drop {
			p.counters.msgsFaultDropped.Add(1)
			continue
		}
		if p.enqueue(m, delay) {
			continue
		}
		p.counters.msgsDropped.Add(1)
		if !containsID(reported, m.To) {
			reported = append(reported, m.To)
			t.lg.Warn("dropped message: send queue full",
				zap.String("remote-peer-id", p.idStr), zap.Stringer("type", m.Type),
				zap.Int("send-queue-msgs", t.cfg.SendQueueMsgs))
			t.raft.ReportUnreachable(m.To)
		}
	}
}

func containsID(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// AddPeer starts talking to member id at urls (http:// without TLS,
// https:// with). Adding a known peer updates its URLs.
func (t *Transport) AddPeer(id uint64, urls []string) {
	if id == t.cfg.LocalID || id == 0 {
		t.lg.Warn("ignored AddPeer of own or zero ID", zap.String("remote-peer-id", idString(id)))
		return
	}
	urls = t.checkURLs(id, urls)
	t.mu.Lock()
	if t.mu.stopped {
		t.mu.Unlock()
		return
	}
	if p, ok := t.mu.peers[id]; ok {
		t.mu.Unlock()
		p.setURLs(urls)
		return
	}
	p := newPeer(t, id, urls)
	t.mu.peers[id] = p
	t.mu.Unlock()
	p.start()
	t.lg.Info("added peer", zap.String("remote-peer-id", p.idStr), zap.Strings("urls", urls))
}

// UpdatePeer replaces the URLs of member id; a stream on a URL no longer
// listed is closed and redialed.
func (t *Transport) UpdatePeer(id uint64, urls []string) {
	urls = t.checkURLs(id, urls)
	if p := t.peer(id); p != nil {
		p.setURLs(urls)
	}
}

// RemovePeer stops talking to member id: its queue is dropped, its streams
// closed, an in-flight snapshot to it fails, and its streams are refused
// from now on (ErrUnknownPeer). It waits for the peer's goroutines.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p, ok := t.mu.peers[id]
	delete(t.mu.peers, id)
	t.mu.Unlock()
	if ok {
		p.stop()
		t.lg.Info("removed peer", zap.String("remote-peer-id", p.idStr))
	}
}

// checkURLs returns the usable URLs of urls, logging the others.
func (t *Transport) checkURLs(id uint64, urls []string) []string {
	want := "http"
	if t.cfg.TLS != nil {
		want = "https"
	}
	ok := make([]string, 0, len(urls))
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != want || u.Host == "" {
			t.lg.Error("ignored unusable peer URL", zap.String("remote-peer-id", idString(id)),
				zap.String("url", s), zap.String("want-scheme", want), zap.Error(err))
			continue
		}
		ok = append(ok, strings.TrimRight(s, "/"))
	}
	if len(ok) == 0 {
		t.lg.Error("peer has no usable URL", zap.String("remote-peer-id", idString(id)))
	}
	return ok
}

// peer returns the peer with id, or nil.
func (t *Transport) peer(id uint64) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.mu.peers[id]
}

// ActiveSince returns when the stream to member id was established, or the
// zero time if it is not connected (or id is unknown).
func (t *Transport) ActiveSince(id uint64) time.Time {
	if p := t.peer(id); p != nil {
		return p.activeSince()
	}
	return time.Time{}
}

// Stats returns a snapshot of every peer's counters.
func (t *Transport) Stats() map[uint64]PeerStats {
	t.mu.Lock()
	peers := make([]*peer, 0, len(t.mu.peers))
	for _, p := range t.mu.peers {
		peers = append(peers, p)
	}
	t.mu.Unlock()
	out := make(map[uint64]PeerStats, len(peers))
	for _, p := range peers {
		out[p.id] = p.stats()
	}
	return out
}

// Stop closes every stream, fails in-flight snapshots, refuses new requests
// (ErrStopped) and waits for every goroutine and handler of the transport.
// Calling it again does nothing.
func (t *Transport) Stop() {
	t.mu.Lock()
	if t.mu.stopped {
		t.mu.Unlock()
		return
	}
	t.mu.stopped = true
	peers := t.mu.peers
	t.mu.peers = map[uint64]*peer{}
	t.mu.Unlock()

	t.cancel()
	for _, p := range peers {
		p.stop()
	}
	t.handlers.Wait()
	t.streamRT.CloseIdleConnections()
	t.snapshotRT.CloseIdleConnections()
	t.lg.Info("stopped transport")
}

// setRequestHeaders stamps a request to member `to`.
func (t *Transport) setRequestHeaders(h http.Header, to uint64) {
	h.Set(headerVersion, protocolVersion)
	h.Set(headerClusterID, idString(t.cfg.ClusterID))
	h.Set(headerFrom, idString(t.cfg.LocalID))
	h.Set(headerTo, idString(to))
}

// admit checks an inbound request's headers and returns its sending peer,
// or the status and error to answer with.
func (t *Transport) admit(r *http.Request) (*peer, int, error) {
	if r.ProtoMajor != 2 {
		return nil, http.StatusHTTPVersionNotSupported, fmt.Errorf("%w: got %s", ErrNotHTTP2, r.Proto)
	}
	if v := r.Header.Get(headerVersion); v != protocolVersion {
		return nil, http.StatusPreconditionFailed,
			fmt.Errorf("%w: got %q, want %q", ErrIncompatibleVersion, v, protocolVersion)
	}
	if got := r.Header.Get(headerClusterID); got != idString(t.cfg.ClusterID) {
		t.lg.Warn("refused request: cluster ID mismatch",
			zap.String("local-cluster-id", idString(t.cfg.ClusterID)),
			zap.String("remote-cluster-id", got),
			zap.String("remote-peer-id", r.Header.Get(headerFrom)),
			zap.String("remote-addr", r.RemoteAddr))
		return nil, http.StatusPreconditionFailed,
			fmt.Errorf("%w: member %s is in cluster %s, request from cluster %q",
				ErrClusterIDMismatch, idString(t.cfg.LocalID), idString(t.cfg.ClusterID), got)
	}
	if got := r.Header.Get(headerTo); got != idString(t.cfg.LocalID) {
		return nil, http.StatusPreconditionFailed,
			fmt.Errorf("%w: request for %s reached %s", ErrMemberIDMismatch, got, idString(t.cfg.LocalID))
	}
	from, err := strconv.ParseUint(r.Header.Get(headerFrom), 16, 64)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("%w: bad %s header", ErrUnknownPeer, headerFrom)
	}
	p := t.peer(from)
	if p == nil {
		if t.cfg.IsRemoved != nil && t.cfg.IsRemoved(from) {
			return nil, http.StatusGone, fmt.Errorf("%w: %s", ErrMemberRemoved, idString(from))
		}
		return nil, http.StatusNotFound, fmt.Errorf("%w: %s", ErrUnknownPeer, idString(from))
	}
	if t.faults.blackholedFrom(from) {
		return nil, http.StatusServiceUnavailable, ErrBlackholed
	}
	return p, 0, nil
}

// idString formats a member or cluster ID as etcd does: lower-case hex.
func idString(id uint64) string { return strconv.FormatUint(id, 16) }
