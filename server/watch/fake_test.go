package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// fakeSource is an in-memory Source: full history, simulated compaction,
// a subscription buffer that overflows (lagging), and a hook to slow or
// block history reads.
type fakeSource struct {
	mu        sync.Mutex
	rev       int64
	compacted int64
	kv        map[string]*mvccpb.KeyValue
	hist      [][]mvccpb.Event // hist[r]: events of revision r
	subs      []*fakeSub
	subBuf    int  // subscription channel capacity
	noReplay  bool // Resume does not replay missed revisions
	// eventsHook, if set, runs (without f.mu) at the start of Events.
	eventsHook func(from, to int64, key, end []byte)
	// holdFeed keeps committed revisions from the subscriptions until
	// releaseFeed: a feed that trails the store's revision.
	holdFeed bool
	held     [][]mvccpb.Event
}

// releaseFeed hands the held revisions to the subscriptions.
func (f *fakeSource) releaseFeed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holdFeed = false
	for _, evs := range f.held {
		f.sendLocked(evs, evs[0].Kv.ModRevision)
	}
	f.held = nil
}

func newFakeSource(subBuf int) *fakeSource {
	// Like etcd, an empty store is at revision 1.
	return &fakeSource{rev: 1, kv: map[string]*mvccpb.KeyValue{}, hist: make([][]mvccpb.Event, 2), subBuf: subBuf}
}

type fakeOp struct {
	del      bool
	key, val string
}

func put(k, v string) fakeOp { return fakeOp{key: k, val: v} }
func del(k string) fakeOp    { return fakeOp{del: true, key: k} }

// txn commits ops as one revision and returns it (unchanged if no op wrote).
func (f *fakeSource) txn(ops ...fakeOp) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	rev := f.rev + 1
	var evs []mvccpb.Event
	for _, op := range ops {
		old := f.kv[op.key]
		if op.del {
			if old == nil {
				continue
			}
			delete(f.kv, op.key)
			evs = append(evs, mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(op.key), ModRevision: rev}, PrevKv: old})
			continue
		}
		kv := &mvccpb.KeyValue{Key: []byte(op.key), Value: []byte(op.val), CreateRevision: rev, ModRevision: rev, Version: 1}
		if old != nil {
			kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
		}
		f.kv[op.key] = kv
		evs = append(evs, mvccpb.Event{Type: mvccpb.PUT, Kv: kv, PrevKv: old})
	}
	if len(evs) == 0 {
		return f.rev
	}
	f.rev = rev
	f.hist = append(f.hist, evs)
	if f.holdFeed {
		f.held = append(f.held, evs)
		return rev
	}
	f.sendLocked(evs, rev)
	return rev
}

// sendLocked hands one revision's events to the subscriptions.
// REQUIRES: f.mu held.
func (f *fakeSource) sendLocked(evs []mvccpb.Event, rev int64) {
	for _, s := range f.subs {
		if s.lagging || s.closed {
			continue
		}
		select {
		case s.ch <- evs:
		default:
			s.lagging, s.from = true, rev
		}
	}
}

func (f *fakeSource) put(k, v string) int64 { return f.txn(put(k, v)) }

func (f *fakeSource) compact(rev int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compacted = max(f.compacted, rev)
}

func (f *fakeSource) Rev() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rev
}

func (f *fakeSource) CompactedRev() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.compacted
}

func inRange(k, key, end []byte) bool {
	switch {
	case end == nil:
		return bytes.Equal(k, key)
	case len(end) == 1 && end[0] == 0:
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

func (f *fakeSource) Events(from, to int64, key, end []byte, maxEvents int) ([]mvccpb.Event, int64, error) {
	if f.eventsHook != nil {
		f.eventsHook(from, to, key, end)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if from <= f.compacted {
		return nil, 0, fmt.Errorf("fake: from %d: %w", from, ErrCompacted)
	}
	to = min(to, f.rev)
	var out []mvccpb.Event
	r := from
	for ; r <= to; r++ {
		var m []mvccpb.Event
		for _, ev := range f.hist[r] {
			if inRange(ev.Kv.Key, key, end) {
				m = append(m, ev)
			}
		}
		if len(out) > 0 && len(out)+len(m) > maxEvents {
			break
		}
		out = append(out, m...)
	}
	return out, r, nil
}

type fakeSub struct {
	f       *fakeSource
	ch      chan []mvccpb.Event
	lagging bool // REQUIRES: f.mu
	from    int64
	closed  bool
}

func (f *fakeSource) Subscribe() Subscription {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &fakeSub{f: f, ch: make(chan []mvccpb.Event, f.subBuf)}
	f.subs = append(f.subs, s)
	return s
}

func (s *fakeSub) C() <-chan []mvccpb.Event { return s.ch }

func (s *fakeSub) Lagging() (bool, int64) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.lagging, s.from
}

func (s *fakeSub) Resume(rev int64) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.lagging = false
	if s.f.noReplay {
		return
	}
	for r := rev; r <= s.f.rev; r++ {
		select {
		case s.ch <- s.f.hist[r]:
		default:
			s.lagging, s.from = true, r
			return
		}
	}
}

func (s *fakeSub) Close() {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.closed = true
}

// expected returns the events a watcher on [key, end) from start with the
// given options must receive, through revision to.
func (f *fakeSource) expected(key, end []byte, start, to int64, v variant) []mvccpb.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []mvccpb.Event
	for r := start; r <= to && r <= f.rev; r++ {
		for _, ev := range f.hist[r] {
			if !inRange(ev.Kv.Key, key, end) || !v.keep(ev.Type) {
				continue
			}
			if v&varPrevKV == 0 {
				ev.PrevKv = nil
			}
			out = append(out, ev)
		}
	}
	return out
}

// harness runs a Server on a real gRPC server on 127.0.0.1:0.
type harness struct {
	t    testing.TB
	src  *fakeSource
	srv  *Server
	gs   *grpc.Server
	addr string
}

func newHarness(t testing.TB, src *fakeSource, cfg Config) *harness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, src: src, addr: lis.Addr().String()}
	h.srv = NewServer(src, cfg, zap.NewNop())
	h.gs = grpc.NewServer()
	pb.RegisterWatchServer(h.gs, h.srv)
	go h.gs.Serve(lis)
	t.Cleanup(func() {
		h.srv.Close()
		h.gs.Stop()
	})
	return h
}

func (h *harness) client() *clientv3.Client {
	h.t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{h.addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// rawStream is a Watch stream driven by hand; responses are read only once
// startReading is called, so tests can play a slow client.
type rawStream struct {
	t      testing.TB
	wc     pb.Watch_WatchClient
	cancel context.CancelFunc
	once   sync.Once

	// readDelay, if set before the first read, is slept every
	// readDelayEvery responses: a slow client.
	readDelay      time.Duration
	readDelayEvery int

	mu     sync.Mutex
	got    []*pb.WatchResponse
	pos    int
	err    error
	notify chan struct{}
}

func (h *harness) raw() *rawStream {
	h.t.Helper()
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wc, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	r := &rawStream{t: h.t, wc: wc, cancel: cancel, notify: make(chan struct{}, 1)}
	h.t.Cleanup(func() { cancel(); conn.Close() })
	return r
}

func (r *rawStream) startReading() {
	r.once.Do(func() {
		go func() {
			for i := 1; ; i++ {
				if r.readDelay > 0 && i%max(r.readDelayEvery, 1) == 0 {
					time.Sleep(r.readDelay)
				}
				resp, err := r.wc.Recv()
				r.mu.Lock()
				if err != nil {
					r.err = err
				} else {
					r.got = append(r.got, resp)
				}
				r.mu.Unlock()
				select {
				case r.notify <- struct{}{}:
				default:
				}
				if err != nil {
					return
				}
			}
		}()
	})
}

func (r *rawStream) send(req *pb.WatchRequest) {
	r.t.Helper()
	if err := r.wc.Send(req); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawStream) create(c *pb.WatchCreateRequest) {
	r.t.Helper()
	r.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}})
}

func (r *rawStream) cancelWatch(id int64) {
	r.t.Helper()
	r.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
}

func (r *rawStream) requestProgress() {
	r.t.Helper()
	r.send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
}

// next returns the next response, failing the test after timeout.
func (r *rawStream) next(timeout time.Duration) *pb.WatchResponse {
	r.t.Helper()
	resp, err := r.tryNext(timeout)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp
}

// tryNext returns the next response, or an error after timeout or when
// the stream failed.
func (r *rawStream) tryNext(timeout time.Duration) (*pb.WatchResponse, error) {
	r.startReading()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		if r.pos < len(r.got) {
			resp := r.got[r.pos]
			r.pos++
			r.mu.Unlock()
			return resp, nil
		}
		err := r.err
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-r.notify:
		case <-deadline:
			return nil, errors.New("no watch response within " + timeout.String())
		}
	}
}

// expectNone asserts that nothing arrives for d.
func (r *rawStream) expectNone(d time.Duration) {
	r.t.Helper()
	if resp, err := r.tryNext(d); err == nil {
		r.t.Fatalf("unexpected response %v", resp)
	}
}

// collector gathers the responses of a raw stream per watch id, joining
// fragments and checking each watcher's invariants as it goes.
type collector struct {
	created   map[int64]*pb.WatchResponse
	events    map[int64][]mvccpb.Event
	canceled  map[int64]*pb.WatchResponse
	progress  []*pb.WatchResponse // watch_id -1
	frag      map[int64][]*mvccpb.Event
	responses map[int64]int
}

func newCollector() *collector {
	return &collector{
		created:   map[int64]*pb.WatchResponse{},
		events:    map[int64][]mvccpb.Event{},
		canceled:  map[int64]*pb.WatchResponse{},
		frag:      map[int64][]*mvccpb.Event{},
		responses: map[int64]int{},
	}
}

func (c *collector) add(t testing.TB, resp *pb.WatchResponse) {
	t.Helper()
	if err := c.addErr(resp); err != nil {
		t.Fatal(err)
	}
}

// addErr records resp, or reports a broken per-watcher invariant.
func (c *collector) addErr(resp *pb.WatchResponse) error {
	id := resp.WatchId
	if resp.Header == nil {
		return fmt.Errorf("response without header: %v", resp)
	}
	switch {
	case resp.Created:
		if resp.Canceled {
			c.canceled[id] = resp
			return nil
		}
		if c.created[id] != nil && c.canceled[id] == nil {
			return fmt.Errorf("watch %d created twice", id)
		}
		c.created[id] = resp
		delete(c.canceled, id)
		c.events[id] = nil
		return nil
	case id == -1:
		c.progress = append(c.progress, resp)
		return nil
	}
	if c.created[id] == nil {
		return fmt.Errorf("response for watch %d before created: %v", id, resp)
	}
	if prev := c.canceled[id]; prev != nil {
		// Only the client's cancel of a compacted watcher may follow, as etcd.
		if prev.CompactRevision != 0 && resp.Canceled && resp.CompactRevision == 0 && len(resp.Events) == 0 {
			return nil
		}
		return fmt.Errorf("response for watch %d after canceled: %v", id, resp)
	}
	if resp.Canceled {
		c.canceled[id] = resp
		return nil
	}
	c.responses[id]++
	if resp.Fragment {
		c.frag[id] = append(c.frag[id], resp.Events...)
		return nil
	}
	evs := append(c.frag[id], resp.Events...)
	delete(c.frag, id)
	for _, ev := range evs {
		if ev.Kv.ModRevision > resp.Header.Revision {
			return fmt.Errorf("watch %d: event at %d in a response with header revision %d", id, ev.Kv.ModRevision, resp.Header.Revision)
		}
		if n := len(c.events[id]); n > 0 && c.events[id][n-1].Kv.ModRevision > ev.Kv.ModRevision {
			return fmt.Errorf("watch %d: event at %d after one at %d", id, ev.Kv.ModRevision, c.events[id][n-1].Kv.ModRevision)
		}
		c.events[id] = append(c.events[id], *ev)
	}
	return nil
}

// sameEvents compares received events with expected ones, field by field.
func sameEvents(got, want []mvccpb.Event) error {
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		g, w := got[i], want[i]
		if g.Type != w.Type || !kvEqual(g.Kv, w.Kv) || !kvEqual(g.PrevKv, w.PrevKv) {
			return fmt.Errorf("event %d: got %v want %v", i, &g, &w)
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("got %d events, want %d", len(got), len(want))
	}
	return nil
}

func kvEqual(a, b *mvccpb.KeyValue) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ab, _ := a.Marshal()
	bb, _ := b.Marshal()
	return bytes.Equal(ab, bb)
}

// waitFor polls cond until it holds or timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
