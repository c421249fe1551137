package watch

import (
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/pkg/v3/adt"
)

// variant selects how a watcher sees a shared event list: which event types it
// filters out and whether PrevKv is kept. Watchers of one keyGroup with the
// same variant share one event slice per revision.
type variant uint8

const (
	varNoPut    variant = 1 << iota // filter NOPUT
	varNoDelete                     // filter NODELETE
	varPrevKV                       // keep PrevKv
	numVariants = 1 << iota
)

// keep reports whether an event of type t passes the variant's filters.
func (v variant) keep(t mvccpb.Event_EventType) bool {
	if t == mvccpb.PUT {
		return v&varNoPut == 0
	}
	return v&varNoDelete == 0
}

// keyGroup is the set of synced watchers on one exact range.
// REQUIRES: Server.mu held for every field.
type keyGroup struct {
	key, end []byte // as the watchers'
	ivl      adt.Interval
	watchers map[*watcher]struct{}

	// Per-revision scratch of the dispatcher, reset after each revision.
	hits     []int // indexes of the revision's events in this group's range
	variants [numVariants][]*mvccpb.Event
	built    [numVariants]bool
}

func (g *keyGroup) reset() {
	g.hits = g.hits[:0]
	for v := range g.built {
		g.built[v] = false
		g.variants[v] = nil
	}
}

// watcherGroup indexes the synced watchers by range: single-key watchers by
// key, ranges (including from-key, whose end is "" = +inf in adt's affine
// order) in an interval tree of keyGroups. Cost of matching one key:
// O(1) map lookup + O(log G + k) stab for G distinct ranges, k hits.
// REQUIRES: Server.mu held.
type watcherGroup struct {
	keys   map[string]*keyGroup
	ranges adt.IntervalTree
	all    map[*watcher]struct{}
}

func newWatcherGroup() watcherGroup {
	return watcherGroup{
		keys:   make(map[string]*keyGroup),
		ranges: adt.NewIntervalTree(),
		all:    make(map[*watcher]struct{}),
	}
}

func (wg *watcherGroup) size() int { return len(wg.all) }

func (wg *watcherGroup) add(w *watcher) {
	if _, ok := wg.all[w]; ok {
		panic("watch: watcher added twice to the synced group")
	}
	wg.all[w] = struct{}{}
	var g *keyGroup
	if w.end == nil {
		g = wg.keys[string(w.key)]
		if g == nil {
			g = &keyGroup{key: w.key, watchers: make(map[*watcher]struct{})}
			wg.keys[string(w.key)] = g
		}
	} else {
		ivl := adt.NewStringAffineInterval(string(w.key), string(w.end))
		if iv := wg.ranges.Find(ivl); iv != nil {
			g = iv.Val.(*keyGroup)
		} else {
			g = &keyGroup{key: w.key, end: w.end, ivl: ivl, watchers: make(map[*watcher]struct{})}
			wg.ranges.Insert(ivl, g)
		}
	}
	g.watchers[w] = struct{}{}
	w.group = g
}

func (wg *watcherGroup) remove(w *watcher) {
	g := w.group
	if g == nil {
		panic("watch: removing a watcher that is not in the synced group")
	}
	delete(wg.all, w)
	delete(g.watchers, w)
	w.group = nil
	if len(g.watchers) > 0 {
		return
	}
	if g.end == nil {
		delete(wg.keys, string(g.key))
	} else if !wg.ranges.Delete(g.ivl) {
		panic("watch: could not remove a range from the interval tree")
	}
}

// match calls f for every keyGroup whose range holds key.
func (wg *watcherGroup) match(key []byte, f func(*keyGroup)) {
	if g := wg.keys[string(key)]; g != nil {
		f(g)
	}
	if wg.ranges.Len() == 0 {
		return
	}
	wg.ranges.Visit(adt.NewStringAffinePoint(string(key)), func(iv *adt.IntervalValue) bool {
		f(iv.Val.(*keyGroup))
		return true
	})
}

// selectEvents returns the events evs[i] for i in idx (all of evs if idx is
// nil) with revision >= minRev that pass v, PrevKv stripped unless v keeps it.
// stripped caches PrevKv-less copies by index (grown lazily; may be nil).
func selectEvents(evs []mvccpb.Event, idx []int, v variant, minRev int64, stripped *[]*mvccpb.Event) []*mvccpb.Event {
	n := len(evs)
	if idx != nil {
		n = len(idx)
	}
	out := make([]*mvccpb.Event, 0, n)
	for j := 0; j < n; j++ {
		i := j
		if idx != nil {
			i = idx[j]
		}
		ev := &evs[i]
		if ev.Kv.ModRevision < minRev || !v.keep(ev.Type) {
			continue
		}
		if v&varPrevKV == 0 && ev.PrevKv != nil {
			if *stripped == nil {
				*stripped = make([]*mvccpb.Event, len(evs))
			}
			s := (*stripped)[i]
			if s == nil {
				c := *ev
				c.PrevKv = nil
				s = &c
				(*stripped)[i] = s
			}
			ev = s
		}
		out = append(out, ev)
	}
	return out
}
