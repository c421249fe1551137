package watch

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

type watcherState uint8

const (
	statePending   watcherState = iota // created response not yet queued
	stateSynced                        // in Server.mu.synced, fed by the dispatcher
	stateUnsynced                      // in stream.unsynced, fed by catch-up
	stateCompacted                     // canceled by compaction; id kept until the client cancels, as etcd
	stateCanceled                      // gone
)

// watcher is one watch on a stream.
type watcher struct {
	st             *stream
	id             int64
	key, end       []byte // end nil: single key; empty non-nil: from key
	variant        variant
	fragment       bool
	progressNotify bool

	// REQUIRES: Server.mu held.
	state watcherState
	next  int64     // next revision the watcher needs
	group *keyGroup // while synced

	// closed: no response for this watcher may be queued any more.
	// REQUIRES: stream.q.mu held.
	closed bool

	// idle: no event queued since the last progress tick (etcd's
	// serverWatchStream.progress[id]).
	idle atomic.Bool
}

// entry is one queued response.
type entry struct {
	resp *pb.WatchResponse
	// w: an event response for w, dropped if w is closed by then.
	w *watcher
	// closes: a final response for this watcher; queuing it closes the
	// watcher (nothing for it may follow but the answer to the client's
	// cancel, which has closes set and w nil, as etcd answers it even
	// after a compaction cancel).
	closes *watcher
}

// stream is one gRPC Watch stream.
type stream struct {
	srv *Server
	gs  pb.Watch_WatchServer

	dataLimit int // queue entries an event response may fill
	ctrlLimit int // queue entries a control response may fill (+ctrlSlackResponses)

	// REQUIRES: Server.mu held for the fields below.
	closed          bool
	watchers        map[int64]*watcher
	nextID          int64
	unsynced        map[*watcher]struct{} // catch-up work list
	future          map[*watcher]struct{} // synced, start beyond dispatchedRev
	notReady        int                   // pending + unsynced watchers
	compacted       int                   // stateCompacted watchers still in watchers
	progressPending bool                  // a WatchProgressRequest awaits all watchers synced
	// progressRev is the store's revision when the pending progress
	// request arrived: the answer waits until the feed has dispatched it,
	// so it follows every event a write acknowledged before the request
	// produced, as etcd's does.
	progressRev int64

	// progressBlocked: a due progress response did not fit the queue.
	progressBlocked atomic.Bool

	q struct {
		sync.Mutex
		ring        []entry // capacity ctrlLimit
		head, n     int
		closed      bool
		spaceCh     chan struct{} // closed and replaced when space frees, if wanted
		spaceWanted bool
	}
	wakeSend  chan struct{} // cap 1
	wakeCatch chan struct{} // cap 1
	donec     chan struct{} // closed when the stream ends
	failc     chan error    // cap 1: send failure
	wg        sync.WaitGroup
}

func newStream(s *Server, gs pb.Watch_WatchServer) *stream {
	st := &stream{
		srv:       s,
		gs:        gs,
		dataLimit: s.cfg.SendQueueResponses,
		ctrlLimit: s.cfg.SendQueueResponses + ctrlSlackResponses,
		watchers:  make(map[int64]*watcher),
		unsynced:  make(map[*watcher]struct{}),
		future:    make(map[*watcher]struct{}),
		wakeSend:  make(chan struct{}, 1),
		wakeCatch: make(chan struct{}, 1),
		donec:     make(chan struct{}),
		failc:     make(chan error, 1),
	}
	st.q.ring = make([]entry, st.ctrlLimit)
	st.q.spaceCh = make(chan struct{})
	return st
}

func (st *stream) wakeCatchUp() {
	select {
	case st.wakeCatch <- struct{}{}:
	default:
	}
}

// pushLocked appends e. REQUIRES: st.q.mu held, room checked.
func (st *stream) pushLocked(e entry) {
	st.q.ring[(st.q.head+st.q.n)%len(st.q.ring)] = e
	st.q.n++
	if e.closes != nil {
		e.closes.closed = true
	}
	select {
	case st.wakeSend <- struct{}{}:
	default:
	}
}

// tryEnqueue queues e if the queue holds fewer than limit entries, without
// waiting. It reports false only when there is no room; an entry for a
// closed watcher or stream is dropped and reported queued.
func (st *stream) tryEnqueue(e entry, limit int) bool {
	st.q.Lock()
	defer st.q.Unlock()
	if st.q.closed || (e.w != nil && e.w.closed) {
		return true
	}
	if st.q.n >= limit {
		return false
	}
	st.pushLocked(e)
	return true
}

// enqueueWait queues e, waiting for room; false if the stream ended.
func (st *stream) enqueueWait(e entry, limit int) bool {
	for {
		st.q.Lock()
		if st.q.closed {
			st.q.Unlock()
			return false
		}
		if e.w != nil && e.w.closed {
			st.q.Unlock()
			return true
		}
		if st.q.n < limit {
			st.pushLocked(e)
			st.q.Unlock()
			return true
		}
		st.q.spaceWanted = true
		ch := st.q.spaceCh
		st.q.Unlock()
		select {
		case <-ch:
		case <-st.donec:
			return false
		}
	}
}

// sendLoop sends queued responses in order; only it calls gs.Send.
func (st *stream) sendLoop() {
	defer st.wg.Done()
	maxBytes := st.srv.cfg.MaxRequestBytes
	for {
		st.q.Lock()
		for st.q.n == 0 && !st.q.closed {
			st.q.Unlock()
			select {
			case <-st.wakeSend:
			case <-st.donec:
				return
			}
			st.q.Lock()
		}
		if st.q.closed {
			st.q.Unlock()
			return
		}
		e := st.q.ring[st.q.head] // only this goroutine pops: stays at head
		st.q.Unlock()

		var err error
		frag := e.w != nil && e.w.fragment
		if frag {
			err = sendFragments(e.resp, maxBytes, st.gs.Send)
		} else {
			err = st.gs.Send(e.resp)
		}

		st.q.Lock()
		st.q.ring[st.q.head] = entry{}
		st.q.head = (st.q.head + 1) % len(st.q.ring)
		st.q.n--
		if st.q.spaceWanted {
			close(st.q.spaceCh)
			st.q.spaceCh = make(chan struct{})
			st.q.spaceWanted = false
		}
		st.q.Unlock()

		if err != nil {
			if st.gs.Context().Err() != nil {
				st.srv.lg.Debug("failed to send watch response to gRPC stream", zap.Error(err))
			} else {
				st.srv.lg.Warn("failed to send watch response to gRPC stream", zap.Error(err))
			}
			st.fail(err)
			return
		}
		if st.progressBlocked.Load() {
			s := st.srv
			s.mu.Lock()
			s.maybeProgressLocked(st)
			s.mu.Unlock()
		}
	}
}

// fail ends the stream with err (the first failure wins).
func (st *stream) fail(err error) {
	select {
	case st.failc <- err:
	default:
	}
}

// close ends the stream: forgets its watchers, stops its goroutines.
func (st *stream) close() {
	s := st.srv
	s.mu.Lock()
	st.closed = true
	for _, w := range st.watchers {
		s.removeWatcherLocked(w)
	}
	delete(s.mu.streams, st)
	delete(s.mu.progressWaiting, st)
	s.mu.Unlock()
	st.q.Lock()
	st.q.closed = true
	st.q.Unlock()
	close(st.donec)
	st.wg.Wait()
}

// recvLoop handles client requests. On io.EOF (client half-close) it
// returns nil and the stream keeps sending, as etcd.
func (st *stream) recvLoop() error {
	for {
		req, err := st.gs.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch uv := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if uv.CreateRequest != nil && !st.create(uv.CreateRequest) {
				return nil
			}
		case *pb.WatchRequest_CancelRequest:
			if uv.CancelRequest != nil && !st.cancel(uv.CancelRequest.WatchId) {
				return nil
			}
		case *pb.WatchRequest_ProgressRequest:
			if uv.ProgressRequest != nil {
				s := st.srv
				s.mu.Lock()
				if !st.closed {
					st.progressPending = true
					st.progressRev = max(st.progressRev, s.src.Rev())
					s.maybeProgressLocked(st)
				}
				s.mu.Unlock()
			}
		default:
			st.srv.lg.Sugar().Infof("invalid watch request type %T received in gRPC stream", uv)
		}
	}
}

// ctrl queues a control response; false if the stream ended.
func (st *stream) ctrl(resp *pb.WatchResponse) bool {
	return st.enqueueWait(entry{resp: resp}, st.ctrlLimit)
}

// refuse answers a create that failed: created and canceled, watch_id -1.
func (st *stream) refuse(reason string) bool {
	s := st.srv
	return st.ctrl(&pb.WatchResponse{
		Header:       s.cfg.Header(s.src.Rev()),
		WatchId:      clientv3.InvalidWatchID,
		Created:      true,
		Canceled:     true,
		CancelReason: reason,
	})
}

// create handles a WatchCreateRequest in etcd's order of checks. It returns
// false if the stream ended.
func (st *stream) create(creq *pb.WatchCreateRequest) bool {
	s := st.srv
	if creq.StartRevision < 0 {
		return st.refuse(rpctypes.ErrCompacted.Error())
	}
	key := creq.Key
	if len(key) == 0 {
		key = []byte{0} // \x00 is the smallest key
	}
	if s.cfg.Authorize != nil {
		if err := s.cfg.Authorize(st.gs.Context(), key, creq.RangeEnd); err != nil {
			return st.refuse(err.Error())
		}
	}
	end := creq.RangeEnd
	switch {
	case len(end) == 0:
		end = nil // single key
	case len(end) == 1 && end[0] == 0:
		end = []byte{} // from key
	}
	if len(end) != 0 && bytes.Compare(key, end) >= 0 {
		return st.refuse(ErrEmptyWatcherRange.Error())
	}
	w := &watcher{
		st:             st,
		key:            key,
		end:            end,
		fragment:       creq.Fragment,
		progressNotify: creq.ProgressNotify,
		state:          statePending,
	}
	for _, f := range creq.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.variant |= varNoPut
		case pb.WatchCreateRequest_NODELETE:
			w.variant |= varNoDelete
		}
	}
	if creq.PrevKv {
		w.variant |= varPrevKV
	}
	w.idle.Store(true)

	s.mu.Lock()
	if st.closed {
		s.mu.Unlock()
		return false
	}
	var refused error
	id := creq.WatchId
	if len(st.watchers) >= s.cfg.MaxWatchersPerStream {
		refused = ErrTooManyWatchers
	} else if id == clientv3.AutoWatchID {
		for st.watchers[st.nextID] != nil {
			st.nextID++
		}
		id = st.nextID
		st.nextID++
	} else if _, ok := st.watchers[id]; ok {
		refused = ErrWatcherDuplicateID
	}
	rev := s.src.Rev()
	if refused != nil {
		s.mu.Unlock()
		return st.refuse(refused.Error())
	}
	w.id = id
	w.next = creq.StartRevision
	if w.next == 0 {
		w.next = rev + 1
	}
	st.watchers[id] = w
	st.notReady++
	s.mu.watchers++
	s.mu.Unlock()

	// Queue created before the watcher can receive anything.
	if !st.ctrl(&pb.WatchResponse{Header: s.cfg.Header(rev), WatchId: id, Created: true}) {
		return false
	}
	s.mu.Lock()
	if w.state == statePending {
		s.syncLocked(w)
	}
	s.mu.Unlock()
	return true
}

// cancel handles a WatchCancelRequest: an unknown id gets no answer (etcd:
// Cancel returns ErrWatcherNotExist and nothing is sent). False if the
// stream ended.
func (st *stream) cancel(id int64) bool {
	s := st.srv
	s.mu.Lock()
	w := st.watchers[id]
	if w == nil || st.closed {
		s.mu.Unlock()
		return true
	}
	s.removeWatcherLocked(w)
	// Held in st.notReady until the cancel is queued, as in
	// compactWatcher: a progress notification must not overtake the
	// cancel of a watcher that may be missing events.
	st.notReady++
	rev := s.src.Rev()
	s.mu.Unlock()
	ok := st.enqueueWait(entry{
		resp:   &pb.WatchResponse{Header: s.cfg.Header(rev), WatchId: id, Canceled: true},
		closes: w,
	}, st.ctrlLimit)
	s.mu.Lock()
	st.notReady--
	s.maybeProgressLocked(st)
	s.mu.Unlock()
	return ok
}

// progressInterval is etcd's GetProgressReportInterval: the interval plus
// up to 10% jitter, so that streams created together do not tick together.
func (st *stream) progressInterval() time.Duration {
	iv := st.srv.cfg.ProgressNotifyInterval
	return iv + time.Duration(rand.Int64N(int64(iv)/10+1))
}

// periodicProgress sends a progress notification (watch_id = the watcher's)
// to each progress_notify watcher that is synced and had no event queued
// since the last tick; skipped when the queue is full, as etcd.
func (st *stream) periodicProgress() {
	s := st.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.closed {
		return
	}
	var hdr *pb.ResponseHeader
	for _, w := range st.watchers {
		if !w.progressNotify {
			continue
		}
		if !w.idle.Swap(true) {
			continue
		}
		if w.state != stateSynced || w.next-1 > s.mu.dispatchedRev {
			continue
		}
		if hdr == nil {
			hdr = s.cfg.Header(s.mu.dispatchedRev)
		}
		st.tryEnqueue(entry{resp: &pb.WatchResponse{Header: hdr, WatchId: w.id}, w: w}, st.ctrlLimit)
	}
}
