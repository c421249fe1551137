package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// watchScenario opens Options.Watchers watchers on the prefix, spread over
// Options.WatchStreams gRPC watch streams (themselves spread over the
// connections), while the workers put under the prefix. An operation is
// one event received by one watcher: ops/s is events/s, and the main
// latency is delivery latency, from the writer's put response (its "ack")
// to the watcher's receipt of the event. The put latency is the class
// "put"; "from-send" measures from the moment the put was sent, which the
// value carries (16 hex digits of the sender's monotonic clock).
//
// An event that arrives before its put's response has been seen by the
// writer counts as 0 latency and in the counter "events_before_ack".
type watchScenario struct {
	env      *Env
	acks     *ackRing
	cancel   context.CancelFunc
	watchers []*watcher
	writers  []*watchWriter
	wg       sync.WaitGroup
}

// Classes of watch.
const (
	watchClassPut = iota
	watchClassFromSend
)

// Bounds of watch: how long Setup waits for the watchers to be created,
// how long Drain waits for the events in flight, and the number of put
// acknowledgements remembered (16 bytes each; a receipt more than that
// many revisions behind its put reads a wrong ack time).
const (
	watchCreateTimeout = 10 * time.Second
	watchDrainTimeout  = 5 * time.Second
	ackRingSize        = 1 << 20
	stampLen           = 16
)

// watchStreamMetadataKey makes each stream's context distinct: clientv3
// shares one gRPC watch stream among the watches whose contexts carry the
// same outgoing metadata.
const watchStreamMetadataKey = "metastore-bench-watch-stream"

func (*watchScenario) Name() string { return "watch" }
func (*watchScenario) Params(o *Options) []string {
	return []string{fmt.Sprintf("watchers=%d", o.Watchers), fmt.Sprintf("streams=%d", o.WatchStreams)}
}
func (*watchScenario) Classes() []string       { return []string{"put", "from-send"} }
func (*watchScenario) workersRecordMain() bool { return false }

func (s *watchScenario) Setup(ctx context.Context, env *Env) error {
	o := env.Opts
	if o.ValSize < stampLen {
		return fmt.Errorf("bench: watch: val-size %d < %d: the value carries a timestamp", o.ValSize, stampLen)
	}
	s.env = env
	s.acks = newAckRing(ackRingSize)
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	streams := make([]context.Context, o.WatchStreams)
	for j := range streams {
		streams[j] = metadata.AppendToOutgoingContext(wctx, watchStreamMetadataKey, strconv.Itoa(j))
	}
	for i := range o.Watchers {
		j := i % o.WatchStreams
		cli := env.Clients[j%len(env.Clients)]
		wch := cli.Watch(streams[j], o.Prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		select {
		case resp, ok := <-wch:
			if !ok || !resp.Created {
				cancel()
				return fmt.Errorf("bench: watch: watcher %d not created: %v", i, resp.Err())
			}
		case <-time.After(watchCreateTimeout):
			cancel()
			return fmt.Errorf("bench: watch: watcher %d not created within %v", i, watchCreateTimeout)
		case <-ctx.Done():
			cancel()
			return ctx.Err()
		}
		w := &watcher{s: s, wch: wch, rec: env.Recorder(i)}
		s.watchers = append(s.watchers, w)
		s.wg.Add(1)
		go w.run(&s.wg)
	}
	return nil
}

func (s *watchScenario) NewWorker(i int, cli *clientv3.Client) Worker {
	w := &watchWriter{s: s, kv: cli.KV, rnd: newRand(i), buf: make([]byte, 0, s.env.Opts.ValSize)}
	s.writers = append(s.writers, w)
	return w
}

// Drain waits until every watcher has seen the last acknowledged put (or
// watchDrainTimeout), then closes the watches and reports the counters.
// REQUIRES: the workers have stopped.
func (s *watchScenario) Drain(ctx context.Context, env *Env) error {
	var lastRev, puts int64
	for _, w := range s.writers {
		lastRev = max(lastRev, w.lastRev)
		puts += w.puts
	}
	deadline := time.Now().Add(watchDrainTimeout)
	for ctx.Err() == nil && time.Now().Before(deadline) && !s.caughtUp(lastRev) {
		time.Sleep(10 * time.Millisecond)
	}
	s.cancel()
	s.wg.Wait()
	var events, early int64
	for _, w := range s.watchers {
		events += w.events
		early += w.beforeAck
	}
	env.Counter("puts").Store(puts)
	env.Counter("events").Store(events)
	env.Counter("events_before_ack").Store(early)
	env.Counter("events_missing").Store(max(0, puts*int64(len(s.watchers))-events))
	return nil
}

func (s *watchScenario) caughtUp(rev int64) bool {
	for _, w := range s.watchers {
		if w.lastRev.Load() < rev {
			return false
		}
	}
	return true
}

type watchWriter struct {
	s       *watchScenario
	kv      clientv3.KV
	rnd     *rand.Rand
	buf     []byte
	lastRev int64 // read by Drain after the worker stopped
	puts    int64
}

func (w *watchWriter) Do(ctx context.Context) (int, error) {
	keys := w.s.env.Keys
	w.buf = appendStamp(w.buf[:0], monoNs())
	w.buf = append(w.buf, w.s.env.Value[stampLen:]...)
	resp, err := w.kv.Put(ctx, keys.Key(w.rnd.IntN(keys.Len())), string(w.buf))
	if err != nil {
		return watchClassPut, err
	}
	w.s.acks.put(resp.Header.Revision, monoNs())
	w.lastRev = resp.Header.Revision
	w.puts++
	return watchClassPut, nil
}

type watcher struct {
	s         *watchScenario
	wch       clientv3.WatchChan
	rec       *Recorder
	lastRev   atomic.Int64
	events    int64 // read after run returns
	beforeAck int64
}

func (w *watcher) run(wg *sync.WaitGroup) {
	defer wg.Done()
	for resp := range w.wch {
		if err := resp.Err(); err != nil {
			w.rec.Error(err)
			continue
		}
		now := monoNs()
		for _, ev := range resp.Events {
			if ev.Type != mvccpb.PUT {
				continue
			}
			rev := ev.Kv.ModRevision
			if sent, ok := parseStamp(ev.Kv.Value); ok {
				w.rec.RecordClass(watchClassFromSend, now-sent)
			}
			if ack, ok := w.s.acks.get(rev); ok && ack <= now {
				w.rec.Record(now - ack)
			} else {
				w.rec.Record(0)
				w.beforeAck++
			}
			w.events++
			w.lastRev.Store(rev)
		}
	}
}

// clockBase anchors monoNs: values and acknowledgements are stamped on the
// monotonic clock, comparable within this process only.
var clockBase = time.Now()

func monoNs() int64 { return int64(time.Since(clockBase)) }

func appendStamp(dst []byte, ns int64) []byte {
	const hex = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		dst = append(dst, hex[(ns>>shift)&15])
	}
	return dst
}

func parseStamp(v []byte) (int64, bool) {
	if len(v) < stampLen {
		return 0, false
	}
	var ns int64
	for _, c := range v[:stampLen] {
		switch {
		case c >= '0' && c <= '9':
			ns = ns<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			ns = ns<<4 | int64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return ns, true
}

// ackRing remembers when each of the last len(slots) revisions was
// acknowledged, without locks: put stores the time before the revision,
// so a get that sees its revision sees its time.
type ackRing struct {
	slots []ackSlot
	mask  int64
}

type ackSlot struct{ rev, ns atomic.Int64 }

// newAckRing returns a ring of size slots. REQUIRES: size is a power of 2.
func newAckRing(size int) *ackRing {
	return &ackRing{slots: make([]ackSlot, size), mask: int64(size - 1)}
}

func (r *ackRing) put(rev, ns int64) {
	s := &r.slots[rev&r.mask]
	s.ns.Store(ns)
	s.rev.Store(rev)
}

func (r *ackRing) get(rev int64) (int64, bool) {
	s := &r.slots[rev&r.mask]
	if s.rev.Load() != rev {
		return 0, false
	}
	return s.ns.Load(), true
}
