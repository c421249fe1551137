package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// fakeRaft records what the transport hands the node.
type fakeRaft struct {
	mu          sync.Mutex
	msgs        []raftpb.Message
	arrivals    []time.Time
	unreachable map[uint64]int
	snapStatus  map[uint64][]raft.SnapshotStatus
	// processErr, if set, is returned by Process.
	processErr error
	// count is len(msgs), readable without the lock (benchmarks).
	count atomic.Int64
	// record=false only counts (benchmarks).
	record bool
}

func newFakeRaft() *fakeRaft {
	return &fakeRaft{
		unreachable: map[uint64]int{},
		snapStatus:  map[uint64][]raft.SnapshotStatus{},
		record:      true,
	}
}

func (r *fakeRaft) Process(_ context.Context, m raftpb.Message) error {
	if !r.record {
		r.count.Add(1)
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	r.arrivals = append(r.arrivals, time.Now())
	r.count.Add(1)
	return r.processErr
}

func (r *fakeRaft) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[id]++
}

func (r *fakeRaft) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snapStatus[id] = append(r.snapStatus[id], status)
}

// from returns the messages received from id, in arrival order.
func (r *fakeRaft) from(id uint64) []raftpb.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []raftpb.Message
	for _, m := range r.msgs {
		if m.From == id {
			out = append(out, m)
		}
	}
	return out
}

func (r *fakeRaft) unreachableCount(id uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[id]
}

func (r *fakeRaft) snapshotStatuses(id uint64) []raft.SnapshotStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.snapStatus[id])
}

// fakeSource serves one directory for every MsgSnap.
type fakeSource struct {
	dir      string
	opened   atomic.Int32
	released atomic.Int32
}

func (s *fakeSource) OpenSnapshot(raftpb.Message) (string, func(), error) {
	if s.dir == "" {
		return "", nil, errors.New("fakeSource: no snapshot")
	}
	s.opened.Add(1)
	return s.dir, func() { s.released.Add(1) }, nil
}

// fakeSink records received snapshot directories.
type fakeSink struct {
	mu   sync.Mutex
	dirs []string
	// block, if set, is waited on inside SnapshotReceived.
	block chan struct{}
}

func (s *fakeSink) SnapshotReceived(_ raftpb.Message, dir string) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirs = append(s.dirs, dir)
	return nil
}

func (s *fakeSink) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dirs)
}

// member is one Transport served on a loopback listener.
type member struct {
	id   uint64
	tr   *Transport
	raft *fakeRaft
	src  *fakeSource
	sink *fakeSink
	cfg  Config
	addr string // host:port, fixed across restarts
	url  string
	srv  *http.Server
	ln   net.Listener
}

// testConfig returns a Config with short timers for tests.
func testConfig(tb testing.TB, id, cluster uint64) Config {
	return Config{
		LocalID:             id,
		ClusterID:           cluster,
		SnapshotDir:         filepath.Join(tb.TempDir(), "snap"),
		DialTimeout:         time.Second,
		ReconnectBackoffMin: 10 * time.Millisecond,
		ReconnectBackoffMax: 100 * time.Millisecond,
		PingInterval:        50 * time.Millisecond,
		IdleTimeout:         2 * time.Second,
	}
}

// testLogger logs errors to the test log; TRANSPORT_TEST_LOG=debug logs
// everything there, TRANSPORT_TEST_LOG=stderr everything to stderr at once
// (for a hung benchmark, whose test log shows only at its end).
func testLogger(tb testing.TB) *zap.Logger {
	switch os.Getenv("TRANSPORT_TEST_LOG") {
	case "debug":
		return zaptest.NewLogger(tb)
	case "stderr":
		lg, err := zap.NewDevelopment()
		if err != nil {
			tb.Fatal(err)
		}
		return lg
	}
	return zaptest.NewLogger(tb, zaptest.Level(zap.ErrorLevel))
}

// newMember creates a member listening on 127.0.0.1 (an ephemeral port
// unless addr is set) and serving unless serve is false.
func newMember(tb testing.TB, cfg Config, addr string, serve bool) *member {
	tb.Helper()
	m := &member{id: cfg.LocalID, cfg: cfg, raft: newFakeRaft(), src: &fakeSource{}, sink: &fakeSink{}}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	m.ln = ln
	m.addr = ln.Addr().String()
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	m.url = scheme + "://" + m.addr
	m.tr, err = New(cfg, m.raft, m.src, m.sink, testLogger(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(m.stop)
	if serve {
		m.serve()
	}
	return m
}

// newMemberWith is newMember, serving, with r as its Raft; r must wrap
// fake, which the member's raft field then points to.
func newMemberWith(tb testing.TB, cfg Config, r interface {
	Raft
	recorder() *fakeRaft
}) *member {
	tb.Helper()
	m := newMember(tb, cfg, "", false)
	m.tr.Stop()
	var err error
	if m.tr, err = New(cfg, r, m.src, m.sink, testLogger(tb)); err != nil {
		tb.Fatal(err)
	}
	m.raft = r.recorder()
	m.serve()
	return m
}

func (r *fakeRaft) recorder() *fakeRaft { return r }

// serve starts the peer server on the member's listener.
func (m *member) serve() {
	mux := http.NewServeMux()
	mux.Handle("/raft/", m.tr.Handler())
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)} // refused TLS handshakes are expected
	m.tr.ConfigureServer(m.srv)
	ln := m.ln
	srv := m.srv
	go func() {
		if m.cfg.TLS != nil {
			_ = srv.ServeTLS(ln, "", "")
		} else {
			_ = srv.Serve(ln)
		}
	}()
}

// stop stops the transport and closes the server (idempotent).
func (m *member) stop() {
	m.tr.Stop()
	if m.srv != nil {
		_ = m.srv.Close()
	} else if m.ln != nil {
		_ = m.ln.Close()
	}
}

// connect adds every member as a peer of every other.
func connect(ms ...*member) {
	for _, a := range ms {
		for _, b := range ms {
			if a != b {
				a.tr.AddPeer(b.id, []string{b.url})
			}
		}
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heartbeats returns n MsgHeartbeat from -> to, numbered in Commit 1..n.
func heartbeats(from, to uint64, n int) []raftpb.Message {
	out := make([]raftpb.Message, n)
	for i := range out {
		out[i] = raftpb.Message{Type: raftpb.MsgHeartbeat, From: from, To: to, Term: 1, Commit: uint64(i + 1)}
	}
	return out
}

// apps returns n MsgApp from -> to carrying one entry of dataBytes each,
// numbered in Index 1..n.
func apps(from, to uint64, n, dataBytes int) []raftpb.Message {
	data := []byte(strings.Repeat("x", dataBytes))
	out := make([]raftpb.Message, n)
	for i := range out {
		out[i] = raftpb.Message{Type: raftpb.MsgApp, From: from, To: to, Term: 1, Index: uint64(i + 1),
			Entries: []raftpb.Entry{{Term: 1, Index: uint64(i + 2), Data: data}}}
	}
	return out
}

// checkInOrder fails unless msgs carry Commit 1..n in order.
func checkInOrder(tb testing.TB, msgs []raftpb.Message, n int) {
	tb.Helper()
	if len(msgs) != n {
		tb.Fatalf("got %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if m.Commit != uint64(i+1) {
			tb.Fatalf("message %d has Commit %d: out of order", i, m.Commit)
		}
	}
}

// writeTree writes files name -> size of deterministic pseudo-random bytes
// into dir.
func writeTree(tb testing.TB, dir string, sizes map[string]int) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	for name, size := range sizes {
		b := make([]byte, size)
		x := uint32(len(name)*7919 + size)
		for i := range b {
			x = x*1664525 + 1013904223
			b[i] = byte(x >> 24)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}

// sameTree fails unless dirs a and b hold the same files with equal bytes.
func sameTree(tb testing.TB, a, b string) {
	tb.Helper()
	list := func(dir string) []string {
		es, err := os.ReadDir(dir)
		if err != nil {
			tb.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	na, nb := list(a), list(b)
	if !slices.Equal(na, nb) {
		tb.Fatalf("files differ: %v vs %v", na, nb)
	}
	for _, n := range na {
		x, err := os.ReadFile(filepath.Join(a, n))
		if err != nil {
			tb.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, n))
		if err != nil {
			tb.Fatal(err)
		}
		if string(x) != string(y) {
			tb.Fatalf("file %s differs (%d vs %d bytes)", n, len(x), len(y))
		}
	}
}

// dirEntries lists dir's entry names.
func dirEntries(tb testing.TB, dir string) []string {
	tb.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func snapMsg(from, to, term, index uint64) raftpb.Message {
	return raftpb.Message{Type: raftpb.MsgSnap, From: from, To: to, Term: term,
		Snapshot: &raftpb.Snapshot{Metadata: raftpb.SnapshotMetadata{Term: term, Index: index,
			ConfState: raftpb.ConfState{Voters: []uint64{from, to}}}}}
}

func (m *member) String() string { return fmt.Sprintf("member %x at %s", m.id, m.url) }
