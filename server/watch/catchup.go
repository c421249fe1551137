package watch

import (
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// catchUpLoop runs the stream's unsynced watchers through history until they
// rejoin the live feed, and ticks the periodic progress notifications.
func (st *stream) catchUpLoop() {
	defer st.wg.Done()
	ticker := time.NewTicker(st.progressInterval())
	defer ticker.Stop()
	for {
		select {
		case <-st.wakeCatch:
			for st.catchUpRound() {
			}
		case <-ticker.C:
			st.periodicProgress()
		case <-st.donec:
			return
		}
	}
}

// rangeKey identifies a watched range; single tells nil end from "".
type rangeKey struct {
	key, end string
	single   bool
}

// catchUpGroup is the unsynced watchers of one stream on one range: one
// Source.Events read from the smallest next serves them all.
type catchUpGroup struct {
	key, end []byte
	ws       []*watcher
	nexts    []int64 // ws[i].next when the round started
	from     int64   // min(nexts)
}

// catchUpRound gives every unsynced watcher of the stream one batch (at most
// CatchUpBatchEvents events per range). It reports whether to go on.
func (st *stream) catchUpRound() bool {
	s := st.srv
	s.mu.Lock()
	if st.closed || len(st.unsynced) == 0 {
		s.mu.Unlock()
		return false
	}
	to := s.mu.dispatchedRev
	byRange := make(map[rangeKey]*catchUpGroup)
	var groups []*catchUpGroup
	for w := range st.unsynced {
		k := rangeKey{key: string(w.key), end: string(w.end), single: w.end == nil}
		g := byRange[k]
		if g == nil {
			g = &catchUpGroup{key: w.key, end: w.end, from: w.next}
			byRange[k] = g
			groups = append(groups, g)
		}
		g.ws = append(g.ws, w)
		g.nexts = append(g.nexts, w.next)
		g.from = min(g.from, w.next)
	}
	s.mu.Unlock()
	for _, g := range groups {
		if !st.catchUpGroup(g, to) {
			return false
		}
	}
	return true
}

// catchUpGroup reads one batch of g's history up to to, queues it (waiting
// for room: this is where a slow client is held back), advances the
// watchers, and moves those past dispatchedRev back to the synced group.
// It reports false if the stream ended.
func (st *stream) catchUpGroup(g *catchUpGroup, to int64) bool {
	s := st.srv
	next := g.from
	if g.from <= to {
		select {
		case s.catchUpSem <- struct{}{}:
		case <-st.donec:
			return false
		}
		end := g.end
		if end != nil && len(end) == 0 {
			end = allKeys // from key: Source takes etcd's "\x00"
		}
		evs, nxt, err := s.src.Events(g.from, to, g.key, end, s.cfg.CatchUpBatchEvents)
		<-s.catchUpSem
		if err != nil {
			if errors.Is(err, s.cfg.ErrCompacted) {
				// Only the watchers standing at or below the compacted
				// revision are lost; the rest of the group reads again
				// next round from their own min next.
				compacted, n := s.src.CompactedRev(), 0
				for i, w := range g.ws {
					if g.nexts[i] > compacted {
						continue
					}
					n++
					if !st.compactWatcher(w) {
						return false
					}
				}
				if n == 0 {
					s.lg.Panic("watch: Source.Events reported compaction above CompactedRev",
						zap.Int64("from", g.from), zap.Int64("compacted", compacted))
				}
				return true
			}
			s.lg.Warn("watch catch-up failed to read history; ending the stream",
				zap.Int64("from", g.from), zap.Int64("to", to), zap.Error(err))
			// Unavailable: clientv3 reconnects and resumes.
			st.fail(status.Error(codes.Unavailable, "etcdserver: watch history unavailable: "+err.Error()))
			return false
		}
		checkEvents(s.lg, evs, g.from, nxt)
		next = nxt
		if !st.queueCatchUp(g, evs, next) {
			return false
		}
	}
	s.mu.Lock()
	for _, w := range g.ws {
		if w.state != stateUnsynced {
			continue
		}
		w.next = max(w.next, next)
		if w.next > s.mu.dispatchedRev {
			s.syncLocked(w)
		}
	}
	s.mu.Unlock()
	return true
}

// chunk is one catch-up response's worth of events.
type chunk struct {
	hdr *pb.ResponseHeader
	evs []*mvccpb.Event
}

// queueCatchUp queues, for each watcher of g, the events of evs at or after
// its own next, as responses of whole revisions of about MaxRequestBytes.
// Watchers with the same variant and next share the responses' events.
func (st *stream) queueCatchUp(g *catchUpGroup, evs []mvccpb.Event, next int64) bool {
	s := st.srv
	type shareKey struct {
		v    variant
		from int64
	}
	shared := make(map[shareKey][]chunk)
	var stripped []*mvccpb.Event
	for i, w := range g.ws {
		from := g.nexts[i]
		if from >= next {
			continue
		}
		k := shareKey{w.variant, from}
		chunks, ok := shared[k]
		if !ok {
			chunks = s.chunks(selectEvents(evs, nil, w.variant, from, &stripped), next)
			shared[k] = chunks
		}
		for _, c := range chunks {
			resp := &pb.WatchResponse{Header: c.hdr, WatchId: w.id, Events: c.evs}
			if !st.enqueueWait(entry{resp: resp, w: w}, st.dataLimit) {
				return false
			}
		}
		if len(chunks) > 0 {
			w.idle.Store(false)
		}
	}
	return true
}

// chunks cuts evs into responses at revision boundaries once they exceed
// MaxRequestBytes. The header revision of a response is the last revision it
// covers (the last one's: next-1, all of the batch): clientv3 resumes after
// the header revision, so it must never claim more than was sent.
func (s *Server) chunks(evs []*mvccpb.Event, next int64) []chunk {
	if len(evs) == 0 {
		return nil
	}
	var out []chunk
	start, size := 0, 0
	for i := 0; i < len(evs); {
		rev := evs[i].Kv.ModRevision
		j, revSize := i, 0
		for j < len(evs) && evs[j].Kv.ModRevision == rev {
			revSize += evs[j].Size()
			j++
		}
		if size > 0 && size+revSize > s.cfg.MaxRequestBytes {
			out = append(out, chunk{hdr: s.cfg.Header(evs[i-1].Kv.ModRevision), evs: evs[start:i:i]})
			start, size = i, 0
		}
		size += revSize
		i = j
	}
	return append(out, chunk{hdr: s.cfg.Header(next - 1), evs: evs[start:len(evs):len(evs)]})
}

// compactWatcher cancels unsynced watcher w because its history is
// compacted: etcd's response (header revision 0, canceled, compact_revision
// = the smallest revision a watch may start from). The id stays taken until
// the client cancels it, as in etcd. False if the stream ended.
func (st *stream) compactWatcher(w *watcher) bool {
	s := st.srv
	s.mu.Lock()
	if w.state != stateUnsynced {
		s.mu.Unlock()
		return true
	}
	delete(st.unsynced, w)
	// w stays in st.notReady until its cancel is queued: a progress
	// notification must not overtake the cancel of a watcher that is
	// missing events.
	s.mu.slow--
	s.mu.watchers--
	w.state = stateCompacted
	st.compacted++
	compactRev := s.src.CompactedRev() + 1
	s.mu.Unlock()
	ok := st.enqueueWait(entry{
		resp: &pb.WatchResponse{Header: s.cfg.Header(0), WatchId: w.id, CompactRevision: compactRev, Canceled: true},
		// Dropped if the client's cancel got queued first.
		w:      w,
		closes: w,
	}, st.ctrlLimit)
	s.mu.Lock()
	st.notReady--
	s.maybeProgressLocked(st)
	s.mu.Unlock()
	return ok
}
