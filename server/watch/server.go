package watch

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
)

// lagPollInterval is how often the dispatcher asks an idle Subscription
// whether it lags (it also asks whenever it drains the feed). A var so tests
// can shorten it.
var lagPollInterval = 20 * time.Millisecond

// closeStreamsWait bounds how long Close waits for stream handlers to
// return. A handler whose client stopped reading is blocked in gRPC's Send
// until the gRPC server stops (which cancels the stream); Close does not
// wait for that. A var so tests can shorten it.
var closeStreamsWait = 5 * time.Second

// allKeys is the [key, end) of the whole keyspace, as Source.Events takes it.
var allKeys = []byte{0}

// Server implements pb.WatchServer over a Source.
type Server struct {
	src Source
	sub Subscription
	cfg Config
	lg  *zap.Logger

	// catchUpSem bounds concurrent catch-up Source.Events calls
	// (Config.CatchUpConcurrency).
	catchUpSem chan struct{}

	// dispatched mirrors mu.dispatchedRev; owned by the dispatcher goroutine.
	dispatched int64

	mu struct {
		sync.Mutex
		closed        bool
		dispatchedRev int64 // see the package invariants
		synced        watcherGroup
		streams       map[*stream]struct{}
		// progressWaiting: streams with a deferred WatchProgressRequest.
		progressWaiting map[*stream]struct{}
		watchers        int // live watchers (pending, synced or unsynced)
		slow            int // unsynced watchers
		// touched is the dispatcher's per-revision scratch.
		touched []*keyGroup
	}

	stopc     chan struct{}
	runDone   chan struct{}
	streamsWG sync.WaitGroup
	closeOnce sync.Once
}

var _ pb.WatchServer = (*Server)(nil)

// Stats is a snapshot for metrics.
type Stats struct {
	Streams      int   // open Watch streams
	Watchers     int   // live watchers
	SlowWatchers int   // watchers catching up from history (unsynced)
	Rev          int64 // last revision fanned out to synced watchers
}

// NewServer returns a Server fed by src. It panics if cfg.Validate fails:
// call Validate at start-up to report configuration errors.
func NewServer(src Source, cfg Config, lg *zap.Logger) *Server {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	if lg == nil {
		lg = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	if cfg.ProgressNotifyInterval < MinProgressNotifyInterval {
		lg.Warn("adjusting watch progress notify interval to minimum period",
			zap.Duration("min-watch-progress-notify-interval", MinProgressNotifyInterval))
		cfg.ProgressNotifyInterval = MinProgressNotifyInterval
	}
	s := &Server{
		src:        src,
		cfg:        cfg,
		lg:         lg,
		catchUpSem: make(chan struct{}, cfg.CatchUpConcurrency),
		stopc:      make(chan struct{}),
		runDone:    make(chan struct{}),
	}
	s.mu.synced = newWatcherGroup()
	s.mu.streams = make(map[*stream]struct{})
	s.mu.progressWaiting = make(map[*stream]struct{})
	// Subscribe first: revisions committed between Subscribe and Rev arrive
	// on the feed too and are skipped as duplicates.
	s.sub = src.Subscribe()
	s.dispatched = src.Rev()
	s.mu.dispatchedRev = s.dispatched
	go s.run()
	return s
}

// Stats returns current counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Streams:      len(s.mu.streams),
		Watchers:     s.mu.watchers,
		SlowWatchers: s.mu.slow,
		Rev:          s.mu.dispatchedRev,
	}
}

// Close ends every stream with rpctypes.ErrGRPCStopped (codes.Unavailable:
// clientv3 reconnects, possibly to another member, and resumes from the
// revision after the last it received), refuses new streams the same way,
// stops the dispatcher and closes the subscription. It waits for the
// stream handlers to return, at most closeStreamsWait (5 s): stop the gRPC
// server after Close to end streams whose client is not reading.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.mu.closed = true
		s.mu.Unlock()
		close(s.stopc)
		<-s.runDone
		s.sub.Close()
		done := make(chan struct{})
		go func() {
			s.streamsWG.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeStreamsWait):
			s.lg.Warn("watch streams still sending at close; they end when the gRPC server stops")
		}
	})
}

// Watch serves one gRPC Watch stream, as etcd's serverWatchStream.
func (s *Server) Watch(gs pb.Watch_WatchServer) error {
	st := newStream(s, gs)
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return rpctypes.ErrGRPCStopped
	}
	s.mu.streams[st] = struct{}{}
	s.streamsWG.Add(1)
	s.mu.Unlock()
	defer s.streamsWG.Done()

	st.wg.Add(2)
	go st.sendLoop()
	go st.catchUpLoop()
	// As etcd, recvLoop is not waited for: Recv may block until the
	// handler returns.
	errc := make(chan error, 1)
	go func() {
		if err := st.recvLoop(); err != nil {
			errc <- err
		}
	}()

	var err error
	select {
	case err = <-errc:
		if errors.Is(err, context.Canceled) {
			err = rpctypes.ErrGRPCWatchCanceled
		}
	case <-gs.Context().Done():
		err = gs.Context().Err()
		if errors.Is(err, context.Canceled) {
			err = rpctypes.ErrGRPCWatchCanceled
		}
	case err = <-st.failc:
	case <-s.stopc:
		err = rpctypes.ErrGRPCStopped
	}
	st.close()
	return err
}

// run is the dispatcher: it fans the subscription out to synced watchers.
func (s *Server) run() {
	defer close(s.runDone)
	poll := time.NewTicker(lagPollInterval)
	defer poll.Stop()
	c := s.sub.C()
	for {
		select {
		case evs, ok := <-c:
			if !ok {
				c = nil // the Source is going away; wait for Close
				continue
			}
			s.feed(evs)
			if len(c) == 0 {
				s.catchUpFeed()
			}
		case <-poll.C:
			s.catchUpFeed()
		case <-s.stopc:
			return
		}
	}
}

func (s *Server) stopping() bool {
	select {
	case <-s.stopc:
		return true
	default:
		return false
	}
}

// feed dispatches one revision from the subscription, skipping a duplicate
// and filling a gap from history first.
func (s *Server) feed(evs []mvccpb.Event) {
	if len(evs) == 0 {
		return
	}
	rev := evs[0].Kv.ModRevision
	if rev <= s.dispatched {
		return
	}
	if rev > s.dispatched+1 {
		s.replay(rev - 1)
		if rev <= s.dispatched || s.stopping() {
			return
		}
	}
	s.dispatchRevision(rev, evs)
}

// catchUpFeed handles a lagging subscription: replay from history, resume,
// replay what was committed meanwhile; again while it still lags.
func (s *Server) catchUpFeed() {
	for !s.stopping() {
		lagging, from := s.sub.Lagging()
		if !lagging {
			return
		}
		s.lg.Debug("watch subscription lagging; replaying from history",
			zap.Int64("from", from), zap.Int64("dispatched", s.dispatched))
		s.replay(s.src.Rev())
		s.sub.Resume(s.dispatched + 1)
		s.replay(s.src.Rev())
	}
}

// replay dispatches revisions (s.dispatched, to] read from the Source in
// batches of CatchUpBatchEvents, with no lock held while reading. If they
// are compacted, every synced watcher is handed to catch-up (where it is
// canceled with compact_revision) and the dispatcher jumps to to.
func (s *Server) replay(to int64) {
	for s.dispatched < to && !s.stopping() {
		from := s.dispatched + 1
		evs, next, err := s.src.Events(from, to, allKeys, allKeys, s.cfg.CatchUpBatchEvents)
		if err != nil {
			if !errors.Is(err, s.cfg.ErrCompacted) {
				// A store that cannot read its own recent history is broken
				// beyond what a watch can report.
				s.lg.Panic("watch: reading history for the dispatcher failed",
					zap.Int64("from", from), zap.Int64("to", to), zap.Error(err))
			}
			s.mu.Lock()
			for w := range s.mu.synced.all {
				s.unsyncLocked(w, w.next)
			}
			s.mu.dispatchedRev = to
			s.mu.Unlock()
			s.dispatched = to
			return
		}
		checkEvents(s.lg, evs, from, next)
		for i := 0; i < len(evs); {
			j := i + 1
			for j < len(evs) && evs[j].Kv.ModRevision == evs[i].Kv.ModRevision {
				j++
			}
			s.dispatchRevision(evs[i].Kv.ModRevision, evs[i:j])
			i = j
		}
		// Revisions in [from, next) without events (none expected) are done.
		s.mu.Lock()
		if next-1 > s.mu.dispatchedRev {
			s.mu.dispatchedRev = next - 1
		}
		s.afterDispatchLocked()
		s.mu.Unlock()
		s.dispatched = next - 1
	}
}

// checkEvents asserts the Source contract for Events (cheap, always on).
func checkEvents(lg *zap.Logger, evs []mvccpb.Event, from, next int64) {
	if next <= from {
		lg.Panic("watch: Source.Events made no progress", zap.Int64("from", from), zap.Int64("next", next))
	}
	last := from
	for i := range evs {
		r := evs[i].Kv.ModRevision
		if r < last || r >= next {
			lg.Panic("watch: Source.Events returned an event out of order or range",
				zap.Int64("from", from), zap.Int64("next", next), zap.Int64("rev", r), zap.Int64("prev", last))
		}
		last = r
	}
}

// dispatchRevision fans one revision out to the synced watchers.
func (s *Server) dispatchRevision(rev int64, evs []mvccpb.Event) {
	for i := range evs {
		if evs[i].Kv.ModRevision != rev {
			s.lg.Panic("watch: a revision's events carry different revisions",
				zap.Int64("rev", rev), zap.Int64("event-rev", evs[i].Kv.ModRevision))
		}
	}
	s.mu.Lock()
	s.dispatchLocked(rev, evs)
	s.afterDispatchLocked()
	s.mu.Unlock()
	s.dispatched = rev
}

// dispatchLocked offers revision rev to every synced watcher whose range
// holds one of its events: O(E*(log G + k)) to match, O(1) per receiving
// watcher; a watcher whose stream queue is full becomes unsynced at rev.
// REQUIRES: s.mu held.
func (s *Server) dispatchLocked(rev int64, evs []mvccpb.Event) {
	if s.mu.synced.size() == 0 {
		// Nobody to offer it to: skip the matching, whose callback costs
		// an allocation per event (every put pays for this).
		s.mu.dispatchedRev = rev
		return
	}
	touched := s.mu.touched[:0]
	for i := range evs {
		s.mu.synced.match(evs[i].Kv.Key, func(g *keyGroup) {
			if len(g.hits) == 0 {
				touched = append(touched, g)
			}
			g.hits = append(g.hits, i)
		})
	}
	var hdr *pb.ResponseHeader
	var stripped []*mvccpb.Event
	for _, g := range touched {
		for w := range g.watchers {
			if rev < w.next {
				continue // started in the future
			}
			if !g.built[w.variant] {
				g.variants[w.variant] = selectEvents(evs, g.hits, w.variant, 0, &stripped)
				g.built[w.variant] = true
			}
			out := g.variants[w.variant]
			if len(out) == 0 {
				w.next = rev + 1 // all filtered: etcd sends nothing
				continue
			}
			if hdr == nil {
				hdr = s.cfg.Header(rev)
			}
			resp := &pb.WatchResponse{Header: hdr, WatchId: w.id, Events: out}
			if !w.st.tryEnqueue(entry{resp: resp, w: w}, w.st.dataLimit) {
				s.unsyncLocked(w, rev)
				continue
			}
			w.next = rev + 1
			w.idle.Store(false)
		}
		g.reset()
	}
	clear(touched)
	s.mu.touched = touched[:0]
	s.mu.dispatchedRev = rev
}

// afterDispatchLocked answers deferred progress requests that became due.
// REQUIRES: s.mu held.
func (s *Server) afterDispatchLocked() {
	for st := range s.mu.progressWaiting {
		s.maybeProgressLocked(st)
	}
}

// unsyncLocked hands synced watcher w to its stream's catch-up from next.
// REQUIRES: s.mu held.
func (s *Server) unsyncLocked(w *watcher, next int64) {
	if w.state != stateSynced {
		s.lg.Panic("watch: unsyncing a watcher that is not synced", zap.Int64("watch-id", w.id), zap.Uint8("state", uint8(w.state)))
	}
	s.mu.synced.remove(w)
	delete(w.st.future, w)
	w.state = stateUnsynced
	w.next = next
	w.st.unsynced[w] = struct{}{}
	w.st.notReady++
	s.mu.slow++
	w.st.wakeCatchUp()
}

// syncLocked moves watcher w, caught up past dispatchedRev, to the synced
// group (or, for a new watcher, places it where it belongs).
// REQUIRES: s.mu held.
func (s *Server) syncLocked(w *watcher) {
	st := w.st
	switch w.state {
	case stateUnsynced:
		delete(st.unsynced, w)
		st.notReady--
		s.mu.slow--
	case statePending:
		st.notReady--
	default:
		s.lg.Panic("watch: syncing a watcher in a bad state", zap.Int64("watch-id", w.id), zap.Uint8("state", uint8(w.state)))
	}
	if w.next <= s.mu.dispatchedRev {
		// Not caught up (a new watcher replaying history).
		w.state = stateUnsynced
		st.unsynced[w] = struct{}{}
		st.notReady++
		s.mu.slow++
		st.wakeCatchUp()
		return
	}
	w.state = stateSynced
	s.mu.synced.add(w)
	if w.next-1 > s.mu.dispatchedRev {
		st.future[w] = struct{}{}
	}
	s.maybeProgressLocked(st)
}

// removeWatcherLocked forgets w (cancel, stream end).
// REQUIRES: s.mu held.
func (s *Server) removeWatcherLocked(w *watcher) {
	st := w.st
	switch w.state {
	case statePending:
		st.notReady--
		s.mu.watchers--
	case stateSynced:
		s.mu.synced.remove(w)
		delete(st.future, w)
		s.mu.watchers--
	case stateUnsynced:
		delete(st.unsynced, w)
		st.notReady--
		s.mu.slow--
		s.mu.watchers--
	case stateCompacted:
		st.compacted--
	}
	w.state = stateCanceled
	delete(st.watchers, w.id)
}

// maybeProgressLocked answers st's deferred WatchProgressRequest if every
// watcher of st is synced and the feed has dispatched the store's revision
// as of the request: watch_id -1, header revision dispatchedRev (all
// events at or below it are already queued ahead of it). With no live
// watcher the request is dropped, as etcd sends nothing then.
// REQUIRES: s.mu held.
func (s *Server) maybeProgressLocked(st *stream) {
	if !st.progressPending {
		delete(s.mu.progressWaiting, st)
		return
	}
	if len(st.watchers)-st.compacted == 0 || st.closed {
		st.progressPending = false
		delete(s.mu.progressWaiting, st)
		return
	}
	if st.notReady > 0 || s.mu.dispatchedRev < st.progressRev {
		s.mu.progressWaiting[st] = struct{}{}
		return
	}
	for w := range st.future {
		if w.next-1 > s.mu.dispatchedRev {
			s.mu.progressWaiting[st] = struct{}{}
			return
		}
		delete(st.future, w)
	}
	resp := &pb.WatchResponse{Header: s.cfg.Header(s.mu.dispatchedRev), WatchId: -1}
	if !st.tryEnqueue(entry{resp: resp}, st.ctrlLimit) {
		st.progressBlocked.Store(true) // retried by the sender as it drains
		s.mu.progressWaiting[st] = struct{}{}
		return
	}
	st.progressBlocked.Store(false)
	st.progressPending = false
	delete(s.mu.progressWaiting, st)
}
