package transport

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

const waitTimeout = 10 * time.Second

// Three members, every one sending to every other: each receiver sees every
// sender's messages complete and in order.
func TestDeliveryInOrder(t *testing.T) {
	ms := []*member{
		newMember(t, testConfig(t, 1, 7), "", true),
		newMember(t, testConfig(t, 2, 7), "", true),
		newMember(t, testConfig(t, 3, 7), "", true),
	}
	connect(ms...)
	const n = 500
	var wg sync.WaitGroup
	for _, a := range ms {
		for _, b := range ms {
			if a == b {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				msgs := heartbeats(a.id, b.id, n)
				for i := 0; i < n; i += 50 { // several Send calls, as a raft loop makes
					a.tr.Send(msgs[i : i+50])
				}
			}()
		}
	}
	wg.Wait()
	for _, b := range ms {
		for _, a := range ms {
			if a == b {
				continue
			}
			waitFor(t, waitTimeout, "delivery", func() bool { return len(b.raft.from(a.id)) >= n })
			checkInOrder(t, b.raft.from(a.id), n)
		}
	}
	st := ms[0].tr.Stats()[2]
	if st.MsgsSent != n || st.MsgsReceived != n || st.MsgsDropped != 0 {
		t.Fatalf("stats of 1->2: %+v", st)
	}
	if st.ActiveSince.IsZero() || st.LastError != nil || st.BytesSent == 0 || st.BytesReceived == 0 {
		t.Fatalf("stats of 1->2: %+v", st)
	}
	waitFor(t, waitTimeout, "an RTT sample", func() bool { return ms[0].tr.Stats()[2].RTT > 0 })
}

// Messages queued while the peer is not yet serving go out in a few large
// writes, never over MaxBatchBytes each.
func TestBatching(t *testing.T) {
	cfg1 := testConfig(t, 1, 7)
	const maxBatch = 64 << 10
	cfg1.MaxBatchBytes = maxBatch
	a := newMember(t, cfg1, "", true)
	b := newMember(t, testConfig(t, 2, 7), "", false) // listening, not serving
	connect(a, b)
	const n = 2000
	msgs := apps(1, 2, n, 100)
	a.tr.Send(msgs)
	b.serve()
	waitFor(t, waitTimeout, "delivery", func() bool { return len(b.raft.from(1)) >= n })
	got := b.raft.from(1)
	for i, m := range got {
		if m.Index != uint64(i+1) || len(m.Entries) != 1 || len(m.Entries[0].Data) != 100 {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	st := a.tr.Stats()[2]
	frameBytes := 0
	for i := range msgs {
		frameBytes += frameHeaderBytes + msgs[i].Size()
	}
	minWrites := uint64((frameBytes + maxBatch - 1) / maxBatch)
	// All n were queued before the stream came up, so they leave in
	// batches of MaxBatchBytes: minWrites writes, or a few more if the
	// writer raced the queue.
	if st.Writes < minWrites || st.Writes > minWrites+5 {
		t.Fatalf("%d messages (%d frame bytes) in %d writes; want %d..%d", n, frameBytes, st.Writes, minWrites, minWrites+5)
	}
	t.Logf("%d messages, %d bytes, %d writes", n, frameBytes, st.Writes)
}

// The stream survives the peer's restart: it breaks, is redialed with
// backoff, and delivers again to the new process on the same address.
func TestReconnectAfterPeerRestart(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 7), "", true)
	connect(a, b)
	a.tr.Send(heartbeats(1, 2, 10))
	waitFor(t, waitTimeout, "first delivery", func() bool { return len(b.raft.from(1)) == 10 })

	b.stop()
	waitFor(t, waitTimeout, "stream down", func() bool { return a.tr.ActiveSince(2).IsZero() })
	if a.raft.unreachableCount(2) == 0 {
		t.Fatal("no ReportUnreachable after the peer went away")
	}
	b2 := newMember(t, b.cfg, b.addr, true)
	b2.tr.AddPeer(1, []string{a.url})
	a.tr.Send(heartbeats(1, 2, 10))
	waitFor(t, waitTimeout, "delivery after restart", func() bool { return len(b2.raft.from(1)) == 10 })
	checkInOrder(t, b2.raft.from(1), 10)
	if a.tr.ActiveSince(2).IsZero() {
		t.Fatal("ActiveSince zero after reconnect")
	}
}

// A member of another cluster is refused with ErrClusterIDMismatch and
// nothing reaches its raft.
func TestClusterIDMismatch(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 8), "", true)
	connect(a, b)
	a.tr.Send(heartbeats(1, 2, 5))
	waitFor(t, waitTimeout, "dial refusal", func() bool {
		return errors.Is(a.tr.Stats()[2].LastError, ErrClusterIDMismatch)
	})
	if got := b.raft.from(1); len(got) != 0 {
		t.Fatalf("other cluster's raft got %d messages", len(got))
	}
	if !a.tr.ActiveSince(2).IsZero() {
		t.Fatal("refused stream counted as active")
	}
	if a.raft.unreachableCount(2) == 0 {
		t.Fatal("refusal not reported as unreachable")
	}
	t.Logf("error: %v", a.tr.Stats()[2].LastError)
}

// A request for another member ID, or from an unknown member, is refused.
func TestAdmission(t *testing.T) {
	b := newMember(t, testConfig(t, 2, 7), "", true)
	b.tr.AddPeer(1, []string{"http://127.0.0.1:1"})
	for _, tc := range []struct {
		name           string
		from, to, clus uint64
		version        string
		want           error
		code           int
	}{
		{"ok headers, empty body", 1, 2, 7, protocolVersion, nil, http.StatusOK},
		{"wrong member", 1, 3, 7, protocolVersion, ErrMemberIDMismatch, http.StatusPreconditionFailed},
		{"unknown sender", 9, 2, 7, protocolVersion, ErrUnknownPeer, http.StatusNotFound},
		{"other cluster", 1, 2, 8, protocolVersion, ErrClusterIDMismatch, http.StatusPreconditionFailed},
		{"other version", 1, 2, 7, "0", ErrIncompatibleVersion, http.StatusPreconditionFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, b.url+streamPath, http.NoBody)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set(headerVersion, tc.version)
			req.Header.Set(headerClusterID, idString(tc.clus))
			req.Header.Set(headerFrom, idString(tc.from))
			req.Header.Set(headerTo, idString(tc.to))
			resp, err := newRoundTripper(b.cfg.WithDefaults()).RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if tc.want != nil {
				if err := errorFromResponse(resp); !errors.Is(err, tc.want) {
					t.Fatalf("error %v, want %v", err, tc.want)
				}
			}
		})
	}
}

// A full queue drops the message and reports the peer unreachable, once
// per Send call.
func TestQueueFullReportsUnreachable(t *testing.T) {
	cfg := testConfig(t, 1, 7)
	cfg.SendQueueMsgs = 8
	cfg.ReconnectBackoffMin = time.Hour // keep the dialer out of the count
	cfg.ReconnectBackoffMax = time.Hour
	a := newMember(t, cfg, "", true)
	dead := newMember(t, testConfig(t, 2, 7), "", false)
	dead.stop() // nothing listens at dead.url
	a.tr.AddPeer(2, []string{dead.url})
	waitFor(t, waitTimeout, "the first dial to fail", func() bool { return a.tr.Stats()[2].LastError != nil })
	before := a.raft.unreachableCount(2)
	a.tr.Send(heartbeats(1, 2, 100))
	st := a.tr.Stats()[2]
	if st.MsgsDropped != 100-8 {
		t.Fatalf("dropped %d, want %d", st.MsgsDropped, 100-8)
	}
	if got := a.raft.unreachableCount(2) - before; got != 1 {
		t.Fatalf("ReportUnreachable called %d times by one Send, want 1", got)
	}
}

// Stop waits for everything: after it returns raft hears nothing more, and
// the handler refuses new requests.
func TestStop(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 7), "", true)
	connect(a, b)
	a.tr.Send(heartbeats(1, 2, 10))
	waitFor(t, waitTimeout, "delivery", func() bool { return len(b.raft.from(1)) == 10 })
	b.tr.Stop()
	n := len(b.raft.from(1))
	a.tr.Send(heartbeats(1, 2, 10))
	time.Sleep(200 * time.Millisecond)
	if got := len(b.raft.from(1)); got != n {
		t.Fatalf("raft got %d messages after Stop", got-n)
	}
	waitFor(t, waitTimeout, "refusal", func() bool { return errors.Is(a.tr.Stats()[2].LastError, ErrStopped) })
	b.tr.Stop() // idempotent
}

// RemovePeer closes the peer's streams; its redials are refused.
func TestRemovePeer(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 7), "", true)
	connect(a, b)
	a.tr.Send(heartbeats(1, 2, 1))
	waitFor(t, waitTimeout, "delivery", func() bool { return len(b.raft.from(1)) == 1 })
	b.tr.RemovePeer(1)
	waitFor(t, waitTimeout, "refusal", func() bool { return errors.Is(a.tr.Stats()[2].LastError, ErrUnknownPeer) })
	if _, ok := b.tr.Stats()[1]; ok {
		t.Fatal("removed peer still in Stats")
	}
}

// A member that was removed is told so when it dials (it may never apply
// its own removal, which commits without it), while a merely unknown
// member still gets ErrUnknownPeer.
func TestRemovedMemberIsTold(t *testing.T) {
	removed := make(chan struct{}, 1)
	acfg := testConfig(t, 1, 7)
	acfg.OnRemoved = func() {
		select {
		case removed <- struct{}{}:
		default:
		}
	}
	bcfg := testConfig(t, 2, 7)
	bcfg.IsRemoved = func(id uint64) bool { return id == 1 }
	a := newMember(t, acfg, "", true)
	b := newMember(t, bcfg, "", true)
	c := newMember(t, testConfig(t, 3, 7), "", true)
	a.tr.AddPeer(2, []string{b.url})
	c.tr.AddPeer(2, []string{b.url})
	select {
	case <-removed:
	case <-time.After(waitTimeout):
		t.Fatalf("OnRemoved not called; last error %v", a.tr.Stats()[2].LastError)
	}
	if err := a.tr.Stats()[2].LastError; !errors.Is(err, ErrMemberRemoved) {
		t.Fatalf("last error %v, want ErrMemberRemoved", err)
	}
	waitFor(t, waitTimeout, "refusal of the unknown member", func() bool {
		return errors.Is(c.tr.Stats()[2].LastError, ErrUnknownPeer)
	})
}

// UpdatePeer moves the stream to the new URL.
func TestUpdatePeer(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 7), "", true)
	b2 := newMember(t, testConfig(t, 2, 7), "", true) // member 2, moved
	b.tr.AddPeer(1, []string{a.url})
	b2.tr.AddPeer(1, []string{a.url})
	a.tr.AddPeer(2, []string{b.url})
	a.tr.Send(heartbeats(1, 2, 1))
	waitFor(t, waitTimeout, "delivery", func() bool { return len(b.raft.from(1)) == 1 })
	a.tr.UpdatePeer(2, []string{b2.url})
	waitFor(t, waitTimeout, "stream on the new URL", func() bool {
		a.tr.Send(heartbeats(1, 2, 1))
		return len(b2.raft.from(1)) > 0
	})
	if got := a.tr.Stats()[2].URL; got != b2.url {
		t.Fatalf("URL %q, want %q", got, b2.url)
	}
}

// Proposals are stepped off the stream goroutine: a Process blocked on a
// proposal (no leader) does not hold up heartbeats behind it.
func TestBlockedProposalDoesNotStallStream(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	br := &blockingRaft{fakeRaft: newFakeRaft(), release: make(chan struct{})}
	b := newMemberWith(t, testConfig(t, 2, 7), br)
	connect(a, b)
	a.tr.Send([]raftpb.Message{{Type: raftpb.MsgProp, From: 1, To: 2, Entries: []raftpb.Entry{{Data: []byte("p")}}}})
	a.tr.Send(heartbeats(1, 2, 5))
	waitFor(t, waitTimeout, "heartbeats past a blocked proposal", func() bool { return len(b.raft.from(1)) == 5 })
	close(br.release)
	waitFor(t, waitTimeout, "the proposal", func() bool { return len(b.raft.from(1)) == 6 })
}

// blockingRaft blocks Process of MsgProp until release is closed.
type blockingRaft struct {
	*fakeRaft
	release chan struct{}
}

func (r *blockingRaft) Process(ctx context.Context, m raftpb.Message) error {
	if m.Type == raftpb.MsgProp {
		select {
		case <-r.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return r.fakeRaft.Process(ctx, m)
}

// Under sustained load, with every batch full and a receiver slower than
// the sender, the stream lives on past IdleTimeout and nothing is lost. (A
// stream once died here: full batches starved the ping ticker, and the
// receiver's write deadline, armed by the one pong, reset the stream.)
func TestSustainedLoadKeepsStream(t *testing.T) {
	cfg1, cfg2 := testConfig(t, 1, 7), testConfig(t, 2, 7)
	cfg1.MaxBatchBytes = 4 << 10 // every batch ends full
	// Timeouts generous enough that a loaded 2-core CI machine (the race
	// detector, other packages' tests) does not stall past them.
	cfg1.PingInterval, cfg2.PingInterval = 100*time.Millisecond, 100*time.Millisecond
	cfg1.IdleTimeout, cfg2.IdleTimeout = time.Second, time.Second
	a := newMember(t, cfg1, "", true)
	slow := &slowRaft{fakeRaft: newFakeRaft(), perMsg: 200 * time.Microsecond}
	b := newMemberWith(t, cfg2, slow)
	connect(a, b)
	// 2000 messages at >= 200µs each (time.Sleep rounds up to about a
	// millisecond here) keep the queue full for about 2s > IdleTimeout.
	const n = 2000
	a.tr.Send(heartbeats(1, 2, n))
	waitFor(t, waitTimeout, "delivery", func() bool { return len(b.raft.from(1)) == n })
	checkInOrder(t, b.raft.from(1), n)
	if got := a.raft.unreachableCount(2); got != 0 {
		t.Fatalf("stream broke %d times under load: %v", got, a.tr.Stats()[2].LastError)
	}
	st := a.tr.Stats()[2]
	if st.RTT == 0 {
		t.Fatal("no pong under load")
	}
	t.Logf("%d messages in %d writes, last RTT %v", st.MsgsSent, st.Writes, st.RTT)
}

// slowRaft takes perMsg to process each message.
type slowRaft struct {
	*fakeRaft
	perMsg time.Duration
}

func (r *slowRaft) Process(ctx context.Context, m raftpb.Message) error {
	time.Sleep(r.perMsg)
	return r.fakeRaft.Process(ctx, m)
}

// A peer server not set up with ConfigureServer speaks only HTTP/1.1 in
// cleartext: the dial fails with ErrNotHTTP2, which names the fix.
func TestPeerServerNotConfigured(t *testing.T) {
	a := newMember(t, testConfig(t, 1, 7), "", true)
	b := newMember(t, testConfig(t, 2, 7), "", false)
	mux := http.NewServeMux()
	mux.Handle("/raft/", b.tr.Handler())
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	go func() { _ = b.srv.Serve(b.ln) }()
	connect(a, b)
	waitFor(t, waitTimeout, "dial failure", func() bool {
		return errors.Is(a.tr.Stats()[2].LastError, ErrNotHTTP2)
	})
	// An HTTP/1.1 request that reaches the handler is refused too.
	resp, err := http.Post(b.url+streamPath, "application/octet-stream", http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusHTTPVersionNotSupported {
		t.Fatalf("HTTP/1.1 request: status %d", resp.StatusCode)
	}
	t.Logf("%v", a.tr.Stats()[2].LastError)
}

// A receiver that stops reading (its raft is stuck) makes the sender's
// writes block; after IdleTimeout the stream is closed and raft hears
// ReportUnreachable, rather than the sender waiting forever.
func TestStuckReceiverTimesOut(t *testing.T) {
	cfg1, cfg2 := testConfig(t, 1, 7), testConfig(t, 2, 7)
	cfg1.IdleTimeout, cfg2.IdleTimeout = 300*time.Millisecond, 300*time.Millisecond
	a := newMember(t, cfg1, "", true)
	b := newMemberWith(t, cfg2, &stuckRaft{fakeRaft: newFakeRaft()})
	connect(a, b)
	// 8 MiB: far more than HTTP/2's windows and socket buffers hold.
	a.tr.Send(apps(1, 2, 2048, 4<<10))
	waitFor(t, waitTimeout, "write timeout", func() bool {
		return errors.Is(a.tr.Stats()[2].LastError, ErrWriteTimeout)
	})
	if a.raft.unreachableCount(2) == 0 {
		t.Fatal("stuck receiver not reported unreachable")
	}
}

// stuckRaft blocks every Process until its context ends.
type stuckRaft struct{ *fakeRaft }

func (r *stuckRaft) Process(ctx context.Context, m raftpb.Message) error {
	<-ctx.Done()
	return ctx.Err()
}
