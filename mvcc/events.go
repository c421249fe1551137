package mvcc

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metastore/metastore/engine"
)

// Events returns the events of revisions [fromRev, toRev] (toRev <= 0 or
// above the current revision: up to the current revision) on keys in
// [key, end) (end nil: key alone, or every key when key is empty too;
// end "\x00": every key >= key), with
// prev KVs filled as etcd's watch fills them (the key's version at
// revision-1, none for create events or below the compaction revision).
//
// A revision's events are never split: reading stops at the first
// revision boundary at or after maxEvents events (maxEvents <= 0: no
// limit). nextRev is the revision to continue from. fromRev below the
// compaction revision fails with ErrCompacted; fromRev must be >= 1.
func (s *Store) Events(fromRev, toRev int64, key, end []byte, maxEvents int) (evs []mvccpb.Event, nextRev int64, err error) {
	g, err := s.readGen()
	if err != nil {
		return nil, 0, err
	}
	evs, nextRev, err = s.events(fromRev, toRev, key, end, maxEvents)
	if err == nil {
		err = s.checkReadGen(g)
	}
	if err != nil {
		return nil, 0, err
	}
	return evs, nextRev, nil
}

func (s *Store) events(fromRev, toRev int64, key, end []byte, maxEvents int) (evs []mvccpb.Event, nextRev int64, err error) {
	if s.closed.Load() {
		return nil, 0, ErrClosed
	}
	if fromRev < 1 {
		return nil, 0, fmt.Errorf("mvcc: events from revision %d < 1", fromRev)
	}
	st := s.state.Load()
	if toRev <= 0 || toRev > st.rev {
		toRev = st.rev
	}
	if fromRev < st.compacted {
		return nil, 0, ErrCompacted
	}
	if fromRev > toRev {
		return nil, fromRev, nil
	}
	// The snapshot pins every version the events point to, unless a
	// compaction above fromRev started before it was taken: check after.
	snap, err := s.db.NewSnapshot()
	if err != nil {
		return nil, 0, err
	}
	defer snap.Close()
	compacted := s.state.Load().compacted
	if fromRev < compacted {
		return nil, 0, ErrCompacted
	}
	end = mkGteRange(end)
	it, err := snap.NewIterator(engine.CFEvents, engine.IterOptions{
		Lower: eventKey(fromRev), Upper: eventKey(toRev + 1)})
	if err != nil {
		return nil, 0, err
	}
	defer it.Close()
	rd := reader{src: snap}
	defer rd.close()
	nextRev = fromRev
	for ok := it.First(); ok; ok = it.Next() {
		if maxEvents > 0 && len(evs) >= maxEvents {
			return evs, nextRev, nil
		}
		rev, err := decodeEventKey(it.Key())
		if err != nil {
			return nil, 0, err
		}
		list, err := decodeEvents(it.Value(), rev)
		if err != nil {
			return nil, 0, fmt.Errorf("mvcc: events at %d: %w", rev, err)
		}
		for i := range list {
			e := &list[i]
			if !inRange(e.key, key, end) {
				continue
			}
			if e.inline != nil && rev <= compacted {
				// etcd's compaction at rev drops a version superseded
				// within rev; its event is gone there too.
				continue
			}
			ev, err := s.resolveEvent(&rd, snap, rev, e, compacted)
			if err != nil {
				return nil, 0, err
			}
			evs = append(evs, ev)
		}
		nextRev = rev + 1
	}
	if err := it.Error(); err != nil {
		return nil, 0, err
	}
	return evs, toRev + 1, nil
}

// inRange reports whether k is in [key, end) with etcd's conventions.
func inRange(k, key, end []byte) bool {
	if end == nil && len(key) == 0 {
		return true
	}
	if end == nil {
		return bytes.Equal(k, key)
	}
	if bytes.Compare(k, key) < 0 {
		return false
	}
	return len(end) == 0 || bytes.Compare(k, end) < 0
}

// resolveEvent builds the event e of revision rev from the versions it
// names.
func (s *Store) resolveEvent(rd *reader, src source, rev int64, e *eventEntry, compacted int64) (mvccpb.Event, error) {
	var rec record
	var err error
	if e.inline != nil {
		rec, err = decodeRecord(e.inline)
	} else {
		rec, err = versionAt(rd, src, e.key, rev)
	}
	if err != nil {
		return mvccpb.Event{}, fmt.Errorf("mvcc: event %d.%d %q: %w", rev, e.sub, e.key, err)
	}
	if rec.tombstone != e.del || rec.mod.Main != rev {
		return mvccpb.Event{}, corruptf("event %d.%d %q names version %+v tombstone=%t", rev, e.sub, e.key, rec.mod, rec.tombstone)
	}
	var before *record
	if e.superseded != 0 && rev-1 >= compacted {
		b, err := versionAt(rd, src, e.key, e.superseded)
		if err != nil {
			return mvccpb.Event{}, fmt.Errorf("mvcc: prev of event %d.%d %q: %w", rev, e.sub, e.key, err)
		}
		before = &b
	}
	return makeEvent(e.key, &rec, before), nil
}

// versionAt returns the version of key written at main revision rev,
// which must exist.
func versionAt(rd *reader, src source, key []byte, rev int64) (record, error) {
	v, ok, err := src.Get(engine.CFKV, key)
	if err != nil {
		return record{}, err
	}
	if ok {
		latest, err := decodeRecord(v)
		if err != nil {
			return record{}, err
		}
		if latest.mod.Main == rev {
			return latest, nil
		}
	}
	rec, found, err := rd.historyAt(key, rev)
	if err != nil {
		return record{}, err
	}
	if !found || rec.mod.Main != rev {
		return record{}, corruptf("version %d of %q missing", rev, key)
	}
	// rec aliases the reader's iterator; copy the value out.
	rec.value = bytes.Clone(rec.value)
	return rec, nil
}

// Subscription receives every committed revision's events, in order, one
// slice per revision, with prev KVs filled. It never blocks the writer:
// when its buffer (Config.SubscriberBufferEvents) is full it becomes
// lagging and receives nothing more until Resume.
type Subscription struct {
	s      *Store
	c      chan []mvccpb.Event
	wake   chan struct{} // cap 1: the queue became non-empty
	stopc  chan struct{}
	doneWG sync.WaitGroup

	mu struct {
		sync.Mutex
		queue     [][]mvccpb.Event
		queued    int   // events in queue and in flight to c
		lagFrom   int64 // first revision not delivered; 0 when not lagging
		closed    bool
		bufEvents int // Config.SubscriberBufferEvents
	}
}

// subscribers is the store's set of live subscriptions.
type subscribers struct {
	mu struct {
		sync.Mutex
		set map[*Subscription]struct{}
		// published is the last revision handed to the subscriptions.
		published int64
	}
	n atomic.Int64
}

func (ss *subscribers) init(rev int64) {
	ss.mu.set = make(map[*Subscription]struct{})
	ss.mu.published = rev
}

// active reports whether any subscription exists, so writers build events
// only when someone listens.
func (ss *subscribers) active() bool { return ss.n.Load() > 0 }

// publish hands rev's events to every subscription. Called by the apply
// goroutine after the revision is published.
func (ss *subscribers) publish(rev int64, evs []mvccpb.Event) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.mu.published = rev
	for sub := range ss.mu.set {
		sub.offer(rev, evs)
	}
}

func (ss *subscribers) closeAll() {
	ss.mu.Lock()
	subs := make([]*Subscription, 0, len(ss.mu.set))
	for sub := range ss.mu.set {
		subs = append(subs, sub)
	}
	ss.mu.Unlock()
	for _, sub := range subs {
		sub.Close()
	}
}

// Subscribe returns a subscription that receives every revision committed
// after the call (after Rev() as it returns). Close it when done.
func (s *Store) Subscribe() *Subscription {
	sub := &Subscription{
		s:     s,
		c:     make(chan []mvccpb.Event),
		wake:  make(chan struct{}, 1),
		stopc: make(chan struct{}),
	}
	sub.mu.bufEvents = s.cfg.SubscriberBufferEvents
	// Holding the writer lock, no txn is in flight: every txn that commits
	// after this sees the subscription and builds its events.
	s.mu.Lock()
	defer s.mu.Unlock()
	// Pending grouped txns built no events for this subscription: write
	// them out (and publish them) before it counts. A failed write is
	// fatal to the applier, which meets it again; the subscription ends.
	flushErr := s.flushGroupLocked()
	s.subs.mu.Lock()
	if s.closed.Load() || flushErr != nil {
		s.subs.mu.Unlock()
		sub.mu.closed = true
		close(sub.c)
		return sub
	}
	s.subs.mu.set[sub] = struct{}{}
	s.subs.n.Add(1)
	s.subs.mu.Unlock()
	sub.doneWG.Add(1)
	go sub.forward()
	return sub
}

// C returns the channel of revisions' events. It is closed by Close.
func (sub *Subscription) C() <-chan []mvccpb.Event { return sub.c }

// Lagging reports whether the subscription overflowed, and then the first
// revision it did not deliver: read [fromRev, ...] with Events, then call
// Resume.
func (sub *Subscription) Lagging() (fromRev int64, lagging bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return sub.mu.lagFrom, sub.mu.lagFrom != 0
}

// Resume restarts live delivery at revision rev, which must be the
// revision after the last one the caller has (from C or Events). It
// succeeds only when rev is the store's next revision; otherwise more
// revisions were committed meanwhile: the subscription stays lagging from
// rev, and the caller reads them with Events and tries again.
func (sub *Subscription) Resume(rev int64) bool {
	ss := &sub.s.subs
	ss.mu.Lock() // excludes publish, so no revision slips between
	defer ss.mu.Unlock()
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.mu.closed {
		return false
	}
	if rev != ss.mu.published+1 {
		sub.mu.lagFrom = rev
		return false
	}
	sub.mu.lagFrom = 0
	return true
}

// offer queues evs unless the subscription lags or its buffer is full.
func (sub *Subscription) offer(rev int64, evs []mvccpb.Event) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.mu.closed || sub.mu.lagFrom != 0 {
		return
	}
	if sub.mu.queued > 0 && sub.mu.queued+len(evs) > sub.mu.bufEvents {
		sub.mu.lagFrom = rev
		return
	}
	sub.mu.queue = append(sub.mu.queue, evs)
	sub.mu.queued += len(evs)
	select {
	case sub.wake <- struct{}{}:
	default:
	}
}

// forward moves queued revisions to the unbuffered channel C.
func (sub *Subscription) forward() {
	defer sub.doneWG.Done()
	defer close(sub.c)
	for {
		sub.mu.Lock()
		if len(sub.mu.queue) == 0 {
			sub.mu.Unlock()
			select {
			case <-sub.wake:
				continue
			case <-sub.stopc:
				return
			}
		}
		evs := sub.mu.queue[0]
		sub.mu.queue[0] = nil
		sub.mu.queue = sub.mu.queue[1:]
		sub.mu.Unlock()
		select {
		case sub.c <- evs:
		case <-sub.stopc:
			return
		}
		sub.mu.Lock()
		sub.mu.queued -= len(evs)
		sub.mu.Unlock()
	}
}

// Close ends the subscription and closes C.
func (sub *Subscription) Close() {
	ss := &sub.s.subs
	ss.mu.Lock()
	if _, ok := ss.mu.set[sub]; ok {
		delete(ss.mu.set, sub)
		ss.n.Add(-1)
	}
	ss.mu.Unlock()
	sub.mu.Lock()
	if sub.mu.closed {
		sub.mu.Unlock()
		return
	}
	sub.mu.closed = true
	sub.mu.Unlock()
	close(sub.stopc)
	sub.doneWG.Wait()
}
