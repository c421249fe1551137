package watch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const waitTimeout = 10 * time.Second

func recvEvents(t *testing.T, wch clientv3.WatchChan, n int) []*clientv3.Event {
	t.Helper()
	var out []*clientv3.Event
	timeout := time.After(waitTimeout)
	for len(out) < n {
		select {
		case resp, ok := <-wch:
			if !ok {
				t.Fatalf("watch channel closed after %d/%d events", len(out), n)
			}
			if err := resp.Err(); err != nil {
				t.Fatalf("watch error: %v", err)
			}
			out = append(out, resp.Events...)
		case <-timeout:
			t.Fatalf("got %d/%d events", len(out), n)
		}
	}
	return out
}

func describe(evs []*clientv3.Event) string {
	var parts []string
	for _, ev := range evs {
		s := fmt.Sprintf("%s %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
		if ev.PrevKv != nil {
			s += "(prev " + string(ev.PrevKv.Value) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func TestClientv3RangesFiltersPrevKV(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{})
	cli := h.client()
	ctx := context.Background()

	watches := []struct {
		name string
		wch  clientv3.WatchChan
		want string
	}{
		{"key", cli.Watch(ctx, "a"), "PUT a@2, PUT a@7, DELETE a@8"},
		{"prefix", cli.Watch(ctx, "p/", clientv3.WithPrefix()), "PUT p/x@3"},
		{"range", cli.Watch(ctx, "b", clientv3.WithRange("d")), "PUT c@4"},
		{"from-key", cli.Watch(ctx, "m", clientv3.WithFromKey()), "PUT p/x@3, PUT z@5"},
		{"noput", cli.Watch(ctx, "a", clientv3.WithFilterPut()), "DELETE a@8"},
		{"nodelete+prevkv", cli.Watch(ctx, "a", clientv3.WithFilterDelete(), clientv3.WithPrevKV()), "PUT a@2, PUT a@7(prev 1)"},
		{"prevkv", cli.Watch(ctx, "a", clientv3.WithPrevKV()), "PUT a@2, PUT a@7(prev 1), DELETE a@8(prev 6)"},
	}
	src.put("a", "1")   // 2
	src.put("p/x", "2") // 3
	src.put("c", "3")   // 4
	src.put("z", "4")   // 5
	src.put("0", "5")   // 6
	src.put("a", "6")   // 7
	src.txn(del("a"))   // 8
	for _, w := range watches {
		n := strings.Count(w.want, ",") + 1
		if got := describe(recvEvents(t, w.wch, n)); got != w.want {
			t.Errorf("%s: got %q want %q", w.name, got, w.want)
		}
	}
	if st := h.srv.Stats(); st.Watchers != len(watches) || st.Streams != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientv3CancelAndStartRevision(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{})
	cli := h.client()
	for i := 0; i < 10; i++ {
		src.put("k", fmt.Sprint(i)) // revisions 2..11
	}
	ctx, cancel := context.WithCancel(context.Background())
	wch := cli.Watch(ctx, "k", clientv3.WithRev(4))
	src.put("k", "live") // 12
	evs := recvEvents(t, wch, 9)
	for i, ev := range evs {
		if ev.Kv.ModRevision != int64(4+i) {
			t.Fatalf("event %d at revision %d: %s", i, ev.Kv.ModRevision, describe(evs))
		}
	}
	cancel()
	waitFor(t, waitTimeout, "watcher canceled", func() bool { return h.srv.Stats().Watchers == 0 })
}

func TestRawIDsAndRefusals(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{MaxWatchersPerStream: 4})
	r := h.raw()
	expectCreated := func(id int64) {
		t.Helper()
		resp := r.next(waitTimeout)
		if !resp.Created || resp.Canceled || resp.WatchId != id || resp.Header.Revision != src.Rev() {
			t.Fatalf("want created %d at %d, got %v", id, src.Rev(), resp)
		}
	}
	expectRefused := func(reason string) {
		t.Helper()
		resp := r.next(waitTimeout)
		if !resp.Created || !resp.Canceled || resp.WatchId != clientv3.InvalidWatchID || resp.CancelReason != reason {
			t.Fatalf("want refusal %q, got %v", reason, resp)
		}
	}
	r.create(&pb.WatchCreateRequest{Key: []byte("a")})
	expectCreated(0)
	r.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	expectCreated(7)
	r.create(&pb.WatchCreateRequest{Key: []byte("a")})
	expectCreated(1)
	r.create(&pb.WatchCreateRequest{Key: []byte("a"), WatchId: 7})
	expectRefused("mvcc: duplicate watch ID provided on the WatchStream")
	r.create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1})
	expectRefused("etcdserver: mvcc: required revision has been compacted")
	r.create(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	expectRefused("mvcc: watcher range is empty")
	r.create(&pb.WatchCreateRequest{Key: []byte("a")})
	expectCreated(2)
	r.create(&pb.WatchCreateRequest{Key: []byte("a")})
	expectRefused(ErrTooManyWatchers.Error())

	r.cancelWatch(99) // unknown: no answer, as etcd
	r.cancelWatch(7)
	resp := r.next(waitTimeout)
	if !resp.Canceled || resp.Created || resp.WatchId != 7 {
		t.Fatalf("want canceled 7, got %v", resp)
	}
	r.create(&pb.WatchCreateRequest{Key: []byte("a")})
	expectCreated(3)

	src.put("a", "x")
	c := newCollector()
	for i := 0; i < 4; i++ {
		c.created[int64(i)] = &pb.WatchResponse{}
	}
	for i := 0; i < 4; i++ {
		c.add(t, r.next(waitTimeout))
	}
	for id := int64(0); id < 4; id++ {
		if len(c.events[id]) != 1 {
			t.Fatalf("watch %d got %v", id, c.events[id])
		}
	}
	r.expectNone(100 * time.Millisecond)
}

func TestAuthorizeRefusal(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{Authorize: func(_ context.Context, key, _ []byte) error {
		if string(key) == "secret" {
			return rpctypes.ErrGRPCPermissionDenied
		}
		return nil
	}})
	r := h.raw()
	r.create(&pb.WatchCreateRequest{Key: []byte("secret")})
	resp := r.next(waitTimeout)
	if !resp.Canceled || resp.WatchId != -1 || resp.CancelReason != rpctypes.ErrGRPCPermissionDenied.Error() {
		t.Fatalf("got %v", resp)
	}
	r.create(&pb.WatchCreateRequest{Key: []byte("public")})
	if resp := r.next(waitTimeout); !resp.Created || resp.Canceled {
		t.Fatalf("got %v", resp)
	}
}

func TestCompactedStart(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{})
	for i := 0; i < 10; i++ {
		src.put("k", fmt.Sprint(i)) // 2..11
	}
	src.compact(5)

	r := h.raw()
	r.create(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 3})
	if resp := r.next(waitTimeout); !resp.Created || resp.Canceled || resp.WatchId != 0 || resp.Header.Revision != 11 {
		t.Fatalf("want created, got %v", resp)
	}
	resp := r.next(waitTimeout)
	if !resp.Canceled || resp.WatchId != 0 || resp.CompactRevision != 6 || resp.Header.Revision != 0 || len(resp.Events) != 0 {
		t.Fatalf("want compaction cancel at 6, got %v", resp)
	}
	// From the compact revision it works.
	r.create(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 6})
	c := newCollector()
	for len(c.events[1]) < 6 {
		c.add(t, r.next(waitTimeout))
	}
	if err := sameEvents(c.events[1], src.expected([]byte("k"), nil, 6, 11, 0)); err != nil {
		t.Fatal(err)
	}
	// As etcd, the compacted watcher keeps its id until the client cancels it.
	r.cancelWatch(0)
	if resp := r.next(waitTimeout); !resp.Canceled || resp.WatchId != 0 || resp.CompactRevision != 0 {
		t.Fatalf("want canceled 0, got %v", resp)
	}

	cli := h.client()
	wr := <-cli.Watch(context.Background(), "k", clientv3.WithRev(2))
	if !errors.Is(wr.Err(), rpctypes.ErrCompacted) || wr.CompactRevision != 6 {
		t.Fatalf("clientv3 got err %v compact %d", wr.Err(), wr.CompactRevision)
	}
}

func TestProgressNotify(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{ProgressNotifyInterval: 100 * time.Millisecond})
	cli := h.client()
	src.put("x", "1")
	wch := cli.Watch(context.Background(), "a", clientv3.WithProgressNotify())
	select {
	case resp := <-wch:
		if !resp.IsProgressNotify() || resp.Header.Revision != src.Rev() {
			t.Fatalf("want progress notify at %d, got %+v", src.Rev(), resp)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no progress notification")
	}
}

func TestRequestProgress(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{})
	cli := h.client()
	ctx := context.Background()
	wch := cli.Watch(ctx, "a")
	src.put("b", "1")
	waitFor(t, waitTimeout, "dispatch", func() bool { return h.srv.Stats().Rev == src.Rev() })
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-wch:
		if !resp.IsProgressNotify() || resp.Header.Revision != src.Rev() {
			t.Fatalf("want progress notify at %d, got %+v", src.Rev(), resp)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no progress notification")
	}
}

// A progress request while a watcher replays history is answered only once
// it is synced, after its events, with a revision covering them.
func TestRequestProgressDeferredWhileUnsynced(t *testing.T) {
	src := newFakeSource(64)
	gate := make(chan struct{})
	src.eventsHook = func(_, _ int64, key, _ []byte) {
		if string(key) == "slow" {
			<-gate
		}
	}
	h := newHarness(t, src, Config{})
	for i := 0; i < 5; i++ {
		src.put("slow", fmt.Sprint(i)) // 2..6
	}
	r := h.raw()
	r.create(&pb.WatchCreateRequest{Key: []byte("fast")})
	r.create(&pb.WatchCreateRequest{Key: []byte("slow"), StartRevision: 2})
	c := newCollector()
	c.add(t, r.next(waitTimeout))
	c.add(t, r.next(waitTimeout))
	r.requestProgress()
	r.expectNone(300 * time.Millisecond)
	if st := h.srv.Stats(); st.SlowWatchers != 1 {
		t.Fatalf("stats %+v", st)
	}
	close(gate)
	for len(c.progress) == 0 {
		c.add(t, r.next(waitTimeout))
	}
	if len(c.events[1]) != 5 || c.progress[0].Header.Revision != 6 {
		t.Fatalf("events %v progress %v", c.events[1], c.progress)
	}
}

func TestFragment(t *testing.T) {
	src := newFakeSource(64)
	const maxBytes = 64 * 1024
	h := newHarness(t, src, Config{MaxRequestBytes: maxBytes})
	r := h.raw()
	r.create(&pb.WatchCreateRequest{Key: []byte("f/"), RangeEnd: []byte("f0"), Fragment: true})
	r.create(&pb.WatchCreateRequest{Key: []byte("f/"), RangeEnd: []byte("f0")})
	r.next(waitTimeout)
	r.next(waitTimeout)
	cli := h.client()
	wch := cli.Watch(context.Background(), "f/", clientv3.WithPrefix(), clientv3.WithFragment())

	big := strings.Repeat("v", 20*1024)
	var ops []fakeOp
	for i := 0; i < 8; i++ {
		ops = append(ops, put(fmt.Sprintf("f/%d", i), big))
	}
	rev := src.txn(ops...)

	c := newCollector()
	c.created[0], c.created[1] = &pb.WatchResponse{}, &pb.WatchResponse{}
	var frags []*pb.WatchResponse
	for len(c.events[0]) < 8 || len(c.events[1]) < 8 {
		resp := r.next(waitTimeout)
		if resp.WatchId == 0 {
			frags = append(frags, resp)
		}
		c.add(t, resp)
	}
	if len(frags) < 2 {
		t.Fatalf("want fragments, got %d responses", len(frags))
	}
	for i, f := range frags {
		if f.Fragment != (i < len(frags)-1) {
			t.Fatalf("fragment %d of %d has Fragment=%v", i, len(frags), f.Fragment)
		}
		if f.Size() >= maxBytes && len(f.Events) > 1 {
			t.Fatalf("fragment %d is %d bytes", i, f.Size())
		}
	}
	if c.responses[1] != 1 {
		t.Fatalf("non-fragment watcher got %d responses", c.responses[1])
	}
	want := src.expected([]byte("f/"), []byte("f0"), rev, rev, 0)
	for id := int64(0); id < 2; id++ {
		if err := sameEvents(c.events[id], want); err != nil {
			t.Fatal(err)
		}
	}
	// clientv3 joins the fragments into one response.
	resp := <-wch
	if len(resp.Events) != 8 {
		t.Fatalf("clientv3 got %d events in one response", len(resp.Events))
	}

	// Catch-up cuts history into responses of whole revisions near maxBytes.
	for i := 0; i < 10; i++ {
		src.put("f/h", big)
	}
	r.create(&pb.WatchCreateRequest{Key: []byte("f/h"), StartRevision: rev + 1})
	c.add(t, r.next(waitTimeout))
	for len(c.events[2]) < 10 {
		c.add(t, r.next(waitTimeout))
	}
	if c.responses[2] < 3 {
		t.Fatalf("catch-up sent %d responses for 200 KiB", c.responses[2])
	}
	if err := sameEvents(c.events[2], src.expected([]byte("f/h"), nil, rev+1, src.Rev(), 0)); err != nil {
		t.Fatal(err)
	}
}

// A client that stops reading does not hold back the writer nor other
// streams; later it receives every event, in order, exactly once, and its
// watcher rejoins the live feed.
func TestSlowConsumer(t *testing.T) {
	src := newFakeSource(1024)
	h := newHarness(t, src, Config{SendQueueResponses: 8, CatchUpBatchEvents: 50})
	slow, fast := h.raw(), h.raw()
	prefix := &pb.WatchCreateRequest{Key: []byte("k/"), RangeEnd: []byte("k0")}
	slow.create(prefix)
	fast.create(prefix)
	waitFor(t, waitTimeout, "watchers", func() bool { return h.srv.Stats().Watchers == 2 })
	start := src.Rev() + 1

	const n = 3000
	val := strings.Repeat("x", 1024)
	fc := newCollector()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for len(fc.events[0]) < n {
			resp, err := fast.tryNext(waitTimeout)
			if err != nil {
				t.Error(err)
				return
			}
			fc.add(t, resp)
		}
	}()
	for i := 0; i < n; i++ {
		src.put(fmt.Sprintf("k/%d", i%50), val)
	}
	<-done
	want := src.expected([]byte("k/"), []byte("k0"), start, src.Rev(), 0)
	if err := sameEvents(fc.events[0], want); err != nil {
		t.Fatalf("fast stream: %v", err)
	}
	if st := h.srv.Stats(); st.SlowWatchers != 1 {
		t.Fatalf("want the slow watcher unsynced, stats %+v", st)
	}

	sc := newCollector()
	for len(sc.events[0]) < n {
		sc.add(t, slow.next(waitTimeout))
	}
	if err := sameEvents(sc.events[0], want); err != nil {
		t.Fatalf("slow stream: %v", err)
	}
	waitFor(t, waitTimeout, "slow watcher synced", func() bool { return h.srv.Stats().SlowWatchers == 0 })
	// Live again.
	src.put("k/live", "1")
	sc.add(t, slow.next(waitTimeout))
	if got := sc.events[0][n]; string(got.Kv.Key) != "k/live" {
		t.Fatalf("got %v", got)
	}
}

func TestTenThousandWatchersOneStream(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{})
	r := h.raw()
	const watchers, writes = 10_000, 5
	go func() {
		for i := 0; i < watchers; i++ {
			r.create(&pb.WatchCreateRequest{Key: []byte("p/"), RangeEnd: []byte("p0")})
		}
		r.create(&pb.WatchCreateRequest{Key: []byte("other")})
	}()
	c := newCollector()
	for len(c.created) < watchers+1 {
		c.add(t, r.next(waitTimeout))
	}
	start := src.Rev() + 1
	for i := 0; i < writes; i++ {
		src.put(fmt.Sprintf("p/%d", i), "v")
	}
	for total := 0; total < watchers*writes; {
		resp := r.next(waitTimeout)
		c.add(t, resp)
		total += len(resp.Events)
	}
	want := src.expected([]byte("p/"), []byte("p0"), start, src.Rev(), 0)
	for id := int64(0); id < watchers; id++ {
		if err := sameEvents(c.events[id], want); err != nil {
			t.Fatalf("watch %d: %v", id, err)
		}
	}
	if len(c.events[watchers]) != 0 {
		t.Fatal("the other watcher got events")
	}
	waitFor(t, waitTimeout, "all synced", func() bool { return h.srv.Stats().SlowWatchers == 0 })
}

// The shared subscription overflows constantly (no buffer); with or without
// replay on Resume, every event arrives exactly once.
func TestSubscriptionLag(t *testing.T) {
	for _, noReplay := range []bool{false, true} {
		t.Run(fmt.Sprintf("noReplay=%v", noReplay), func(t *testing.T) {
			src := newFakeSource(0)
			src.noReplay = noReplay
			h := newHarness(t, src, Config{CatchUpBatchEvents: 7})
			r := h.raw()
			r.create(&pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, PrevKv: true})
			r.create(&pb.WatchCreateRequest{Key: []byte("k3")})
			c := newCollector()
			c.add(t, r.next(waitTimeout))
			c.add(t, r.next(waitTimeout))
			start := src.Rev() + 1
			const n = 2000
			for i := 0; i < n; i++ {
				if i%3 == 0 {
					src.txn(put(fmt.Sprintf("k%d", i%10), "a"), put(fmt.Sprintf("j%d", i%10), "b"))
				} else {
					src.txn(del(fmt.Sprintf("k%d", (i+5)%10)))
				}
			}
			end := src.Rev()
			want0 := src.expected([]byte{0}, []byte{0}, start, end, varPrevKV)
			want1 := src.expected([]byte("k3"), nil, start, end, 0)
			for len(c.events[0]) < len(want0) || len(c.events[1]) < len(want1) {
				resp, err := r.tryNext(waitTimeout)
				if err != nil {
					t.Fatalf("%v: got %d/%d and %d/%d events, stats %+v, src rev %d", err, len(c.events[0]), len(want0), len(c.events[1]), len(want1), h.srv.Stats(), src.Rev())
				}
				c.add(t, resp)
			}
			if err := sameEvents(c.events[0], want0); err != nil {
				t.Fatal(err)
			}
			if err := sameEvents(c.events[1], want1); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// History compacted under a lagging subscription: the synced watchers are
// canceled with compact_revision after a correct prefix of their events.
func TestSubscriptionLagPastCompaction(t *testing.T) {
	src := newFakeSource(0)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	src.eventsHook = func(_, _ int64, key, end []byte) {
		if len(key) == 1 && key[0] == 0 && len(end) == 1 {
			once.Do(func() {
				entered <- struct{}{}
				<-release
			})
		}
	}
	h := newHarness(t, src, Config{})
	r := h.raw()
	r.create(&pb.WatchCreateRequest{Key: []byte("k")})
	c := newCollector()
	c.add(t, r.next(waitTimeout))
	start := src.Rev() + 1
writes:
	for {
		src.put("k", "v")
		select {
		case <-entered:
			break writes
		default:
		}
	}
	for i := 0; i < 10; i++ {
		src.put("k", "w")
	}
	src.compact(src.Rev() - 2)
	close(release)
	for c.canceled[0] == nil {
		c.add(t, r.next(waitTimeout))
	}
	if got, want := c.canceled[0].CompactRevision, src.CompactedRev()+1; got != want {
		t.Fatalf("compact revision %d, want %d", got, want)
	}
	want := src.expected([]byte("k"), nil, start, src.Rev(), 0)
	if len(c.events[0]) > len(want) {
		t.Fatalf("too many events")
	}
	if err := sameEvents(c.events[0], want[:len(c.events[0])]); err != nil {
		t.Fatal(err)
	}
}

func TestCloseEndsStreamsUnavailable(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{})
	r := h.raw()
	r.create(&pb.WatchCreateRequest{Key: []byte("a")})
	r.next(waitTimeout)
	h.srv.Close()
	_, err := r.tryNext(waitTimeout)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "etcdserver: server stopped") {
		t.Fatalf("got %v", err)
	}
	r2 := h.raw()
	if _, err := r2.tryNext(waitTimeout); status.Code(err) != codes.Unavailable {
		t.Fatalf("new stream after Close: %v", err)
	}
}

// clientv3 reconnects after Close and resumes from the revision after the
// last one it received: no gap, no duplicate.
func TestClientv3ResumesAfterServerRestart(t *testing.T) {
	src := newFakeSource(64)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	serve := func(lis net.Listener) (*Server, *grpc.Server) {
		srv := NewServer(src, Config{}, zap.NewNop())
		gs := grpc.NewServer()
		pb.RegisterWatchServer(gs, srv)
		go gs.Serve(lis)
		return srv, gs
	}
	srv1, gs1 := serve(lis)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	start := src.Rev() + 1
	wch := cli.Watch(context.Background(), "k")
	for i := 0; i < 5; i++ {
		src.put("k", fmt.Sprint(i))
	}
	got := recvEvents(t, wch, 5)
	srv1.Close()
	gs1.Stop()
	for i := 5; i < 10; i++ {
		src.put("k", fmt.Sprint(i)) // while no server is up
	}
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv2, gs2 := serve(lis2)
	defer func() { srv2.Close(); gs2.Stop() }()
	src.put("k", "10")
	got = append(got, recvEvents(t, wch, 6)...)
	want := src.expected([]byte("k"), nil, start, src.Rev(), 0)
	var gotEvs []mvccpb.Event
	for _, ev := range got {
		gotEvs = append(gotEvs, mvccpb.Event(*ev))
	}
	if err := sameEvents(gotEvs, want); err != nil {
		t.Fatal(err)
	}
}

// Close does not hang on a client that stopped reading; stopping the gRPC
// server then ends that stream.
func TestCloseWithStalledClient(t *testing.T) {
	defer func(d time.Duration) { closeStreamsWait = d }(closeStreamsWait)
	closeStreamsWait = 200 * time.Millisecond
	src := newFakeSource(64)
	h := newHarness(t, src, Config{SendQueueResponses: 4})
	r := h.raw()
	r.create(&pb.WatchCreateRequest{Key: []byte("k")})
	waitFor(t, waitTimeout, "watcher", func() bool { return h.srv.Stats().Watchers == 1 })
	big := strings.Repeat("x", 64*1024)
	for i := 0; i < 100; i++ { // far beyond gRPC's flow-control windows
		src.put("k", big)
	}
	waitFor(t, waitTimeout, "slow watcher", func() bool { return h.srv.Stats().SlowWatchers == 1 })
	closed := make(chan struct{})
	go func() {
		h.srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close hung on a stalled client")
	}
	h.gs.Stop()
}

// TestProgressFollowsAcknowledgedWrites: a progress request made after a
// write was acknowledged is answered only after that write's event, as
// etcd's (the differential test's "progress-synced" case), even when the
// feed trails the store's revision.
func TestProgressFollowsAcknowledgedWrites(t *testing.T) {
	src := newFakeSource(64)
	h := newHarness(t, src, Config{})
	r := h.raw()
	r.startReading()
	r.create(&pb.WatchCreateRequest{Key: []byte("k")})
	if resp := r.next(waitTimeout); !resp.Created {
		t.Fatalf("want created, got %v", resp)
	}
	src.mu.Lock()
	src.holdFeed = true
	src.mu.Unlock()
	rev := src.put("k", "v") // acknowledged: the store is at rev, the feed not yet
	r.requestProgress()
	r.expectNone(300 * time.Millisecond)
	src.releaseFeed()
	ev := r.next(waitTimeout)
	if len(ev.Events) != 1 || ev.Events[0].Kv.ModRevision != rev {
		t.Fatalf("want the event at %d first, got %v", rev, ev)
	}
	pr := r.next(waitTimeout)
	if pr.WatchId != -1 || pr.Header.Revision != rev {
		t.Fatalf("want progress at %d after the event, got %v", rev, pr)
	}
}
