package server

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

func testCodecMetrics() *serverMetrics {
	return &serverMetrics{
		clientSentBytes:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sent"}),
		clientReceivedBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "received"}),
	}
}

// TestClientCodecRoundTrip encodes etcd's messages (small ones in plain
// slices, large ones in pooled buffers) and a message without generated
// methods (the health service's), decodes them back, and counts the bytes
// each way as etcd's codec does.
func TestClientCodecRoundTrip(t *testing.T) {
	m := testCodecMetrics()
	c := newClientCodec(m)
	var sent, received float64
	for _, size := range []int{0, 10, 1024, 1025, 1 << 20} {
		in := &pb.PutRequest{Key: []byte("key"), Value: bytes.Repeat([]byte{'v'}, size), Lease: 7, PrevKv: true}
		data, err := c.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if data.Len() != in.Size() {
			t.Fatalf("value %d: encoded %d bytes, want %d", size, data.Len(), in.Size())
		}
		want, _ := in.Marshal()
		if got := data.Materialize(); !bytes.Equal(got, want) {
			t.Fatalf("value %d: encoding differs from the generated Marshal", size)
		}
		sent += float64(data.Len())
		received += float64(data.Len())
		var out pb.PutRequest
		if err := c.Unmarshal(data, &out); err != nil {
			t.Fatal(err)
		}
		data.Free() // the decoded message must not alias the buffer
		if !bytes.Equal(out.Key, in.Key) || !bytes.Equal(out.Value, in.Value) || out.Lease != 7 || !out.PrevKv {
			t.Fatalf("value %d: round trip gave %v", size, &out)
		}
	}

	hin := &healthpb.HealthCheckRequest{Service: "svc"}
	data, err := c.Marshal(hin)
	if err != nil {
		t.Fatal(err)
	}
	sent += float64(data.Len())
	received += float64(data.Len())
	var hout healthpb.HealthCheckRequest
	if err := c.Unmarshal(data, &hout); err != nil || hout.Service != "svc" {
		t.Fatalf("health round trip: %v %q", err, hout.Service)
	}

	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("marshaling a string succeeded")
	}
	bad := mem.BufferSlice{mem.SliceBuffer([]byte{0xff, 0xff, 0xff})}
	received += 3
	if err := c.Unmarshal(bad, &pb.PutRequest{}); err == nil {
		t.Fatal("decoding garbage succeeded")
	}

	if got := counterValue(t, m.clientSentBytes); got != sent {
		t.Errorf("sent bytes %v, want %v", got, sent)
	}
	if got := counterValue(t, m.clientReceivedBytes); got != received {
		t.Errorf("received bytes %v, want %v", got, received)
	}
	if c.Name() != "proto" {
		t.Errorf("codec name %q", c.Name())
	}
}

// TestGRPCServerMetrics checks the cached children against the labels the
// middleware used: every registered method's series exist from the start,
// calls count under their code, and a code outside the usual ones or an
// unregistered method still counts.
func TestGRPCServerMetrics(t *testing.T) {
	m := newGRPCServerMetrics(true)
	g := grpc.NewServer()
	pb.RegisterKVServer(g, kvServer{})
	pb.RegisterWatchServer(g, &pb.UnimplementedWatchServer{})
	m.initialize(g)

	handled := func(typ, method, code string) float64 {
		t.Helper()
		return counterValue(t, m.handled.WithLabelValues(typ, "etcdserverpb.KV", method, code))
	}
	if n := seriesCount(m.handled); n != 6*len(grpcCodes) {
		t.Fatalf("%d handled series at start, want %d (5 KV methods and Watch, every code)", n, 6*len(grpcCodes))
	}
	if n := seriesCount(m.started); n != 6 {
		t.Fatalf("%d started series at start, want 6", n)
	}

	put := m.method(grpcTypeUnary, "/etcdserverpb.KV/Put")
	if put != m.method(grpcTypeUnary, "/etcdserverpb.KV/Put") {
		t.Fatal("children of a registered method are looked up again")
	}
	start := time.Now()
	put.done(nil, start)
	put.done(status.Error(codes.InvalidArgument, "bad"), start)
	put.done(context.DeadlineExceeded, start)
	put.done(errors.New("plain"), start)
	put.done(status.Error(codes.Code(42), "odd"), start)
	for code, want := range map[string]float64{"OK": 1, "InvalidArgument": 1, "DeadlineExceeded": 1, "Unknown": 1, "Code(42)": 1, "Internal": 0} {
		if got := handled(grpcTypeUnary, "Put", code); got != want {
			t.Errorf("Put handled{code=%s} = %v, want %v", code, got, want)
		}
	}
	if got := seriesCount(m.handling); got != 6 {
		t.Errorf("%d handling histograms, want 6", got)
	}

	w := m.method(grpcTypeBidiStream, "/etcdserverpb.Watch/Watch")
	if w.typ != grpcTypeBidiStream || w.service != "etcdserverpb.Watch" || w.method != "Watch" {
		t.Errorf("Watch labels %q %q %q", w.typ, w.service, w.method)
	}
	odd := m.method(grpcTypeUnary, "nonsense")
	odd.done(nil, start)
	if got := counterValue(t, m.handled.WithLabelValues(grpcTypeUnary, "unknown", "unknown", "OK")); got != 1 {
		t.Errorf("unregistered method counted %v, want 1", got)
	}
	for _, c := range []struct {
		client, server bool
		want           string
	}{{false, false, grpcTypeUnary}, {true, false, grpcTypeClientStream}, {false, true, grpcTypeServerStream}, {true, true, grpcTypeBidiStream}} {
		if got := methodType(c.client, c.server); got != c.want {
			t.Errorf("methodType(%v, %v) = %s, want %s", c.client, c.server, got, c.want)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func seriesCount(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	n := 0
	for range ch {
		n++
	}
	return n
}

// TestWaitRegistryOneResult: an ID gets one result at most, whoever
// removes it sends; stop answers the waiting and every later registration.
func TestWaitRegistryOneResult(t *testing.T) {
	w := newWaitRegistry()
	ch := w.Register(1)
	w.Trigger(1, result{resp: "first"})
	w.Trigger(1, result{resp: "second"}) // must not block or send
	if w.Cancel(1) {
		t.Fatal("Cancel after Trigger found the ID waiting")
	}
	if r := <-ch; r.resp != "first" || len(ch) != 0 {
		t.Fatalf("got %v, %d more", r.resp, len(ch))
	}
	ch2 := w.Register(2)
	if !w.Cancel(2) {
		t.Fatal("Cancel of a waiting ID reported it gone")
	}
	w.Trigger(2, result{resp: "late"})
	if len(ch2) != 0 {
		t.Fatal("a canceled ID got a result")
	}
	ch3 := w.Register(3)
	w.stop(errStopped)
	if r := <-ch3; r.err != errStopped {
		t.Fatalf("waiting at stop: %v", r.err)
	}
	if r := <-w.Register(4); r.err != errStopped {
		t.Fatalf("registered after stop: %v", r.err)
	}
}

// TestWaiterDeadline: a waiter's deadline answers context.DeadlineExceeded
// through the registry, a result that came first stops it, and a waiter
// whose deadline fired is not reused.
func TestWaiterDeadline(t *testing.T) {
	s := &Server{waits: newWaitRegistry()}
	w := s.getWaiter(1)
	w.timer.Reset(5 * time.Millisecond)
	if r := <-w.res; r.err != context.DeadlineExceeded {
		t.Fatalf("deadline result %v", r.err)
	}
	s.putWaiter(w)
	for range 10 {
		if s.waiters.Get() == w {
			t.Fatal("a waiter whose timer fired was reused")
		}
	}

	w = s.getWaiter(2)
	w.timer.Reset(20 * time.Millisecond)
	s.waits.Trigger(2, result{resp: "applied"})
	if r := <-w.res; r.resp != "applied" {
		t.Fatalf("result %v", r.resp)
	}
	s.putWaiter(w)
	w = s.getWaiter(3) // perhaps the same one: its old deadline must not reach it
	w.timer.Reset(time.Hour)
	time.Sleep(40 * time.Millisecond)
	select {
	case r := <-w.res:
		t.Fatalf("a stale deadline reached request 3: %v", r.err)
	default:
	}
	w.onRefused(ErrGRPCNoLeaderForTest)
	if r := <-w.res; r.err != ErrGRPCNoLeaderForTest {
		t.Fatalf("refusal %v", r.err)
	}
}

var ErrGRPCNoLeaderForTest = errors.New("no leader")
