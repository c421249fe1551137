package main

import (
	"fmt"
	"math"

	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// The checks read a finished History. Each returns its problems as
// sentences; an empty list means the property held on this history.

// revisionLog is the keyspace's history reconstructed from the watches:
// the events of each revision (from the first watcher that saw it, every
// other watcher must agree) and the state after each revision up to
// Covered, the last revision before which no revision is missing.
type revisionLog struct {
	Events  map[int64][]Event
	Covered int64 // every revision in [2, Covered] has events
	MaxRev  int64
	states  []map[string]KV // states[r] for r in [1, Covered]
}

func eventsEqual(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].KV != b[i].KV || (a[i].Prev == nil) != (b[i].Prev == nil) ||
			(a[i].Prev != nil && *a[i].Prev != *b[i].Prev) {
			return false
		}
	}
	return true
}

// withoutPrev drops prev_kv, which a member may leave out (compacted):
// checkWatch checks it against the state instead.
func withoutPrev(evs []Event) []Event {
	out := make([]Event, len(evs))
	for i, e := range evs {
		e.Prev = nil
		out[i] = e
	}
	return out
}

// byRevision groups one watcher's events by revision (in order received).
func byRevision(l *WatchLog) (map[int64][]Event, []int64) {
	m := map[int64][]Event{}
	var order []int64
	for _, r := range l.Responses {
		for _, e := range r.Events {
			if _, ok := m[e.KV.ModRev]; !ok {
				order = append(order, e.KV.ModRev)
			}
			m[e.KV.ModRev] = append(m[e.KV.ModRev], e)
		}
	}
	return m, order
}

// buildRevisionLog merges the watchers' events; a revision two watchers
// report differently is a problem (watch events must be the same on every
// member: etcd's "atomic" and "unique" across watchers).
func buildRevisionLog(watches []*WatchLog) (*revisionLog, []string) {
	rl := &revisionLog{Events: map[int64][]Event{}}
	from := map[int64]string{}
	var problems []string
	for _, w := range watches {
		m, _ := byRevision(w)
		for rev, evs := range m {
			if prev, ok := rl.Events[rev]; ok {
				if !eventsEqual(withoutPrev(prev), withoutPrev(evs)) {
					problems = append(problems, fmt.Sprintf("watch: revision %d differs: %s saw %s, %s saw %s",
						rev, from[rev], describeEvents(prev), w.Member, describeEvents(evs)))
				}
				continue
			}
			rl.Events[rev] = evs
			from[rev] = w.Member
			rl.MaxRev = max(rl.MaxRev, rev)
		}
	}
	state := map[string]KV{}
	rl.states = []map[string]KV{nil, state}
	for rev := int64(2); ; rev++ {
		evs, ok := rl.Events[rev]
		if !ok {
			rl.Covered = rev - 1
			break
		}
		next := make(map[string]KV, len(state)+1)
		for k, v := range state {
			next[k] = v
		}
		for _, e := range evs {
			if e.Type == EventPut {
				next[e.KV.Key] = e.KV
			} else {
				delete(next, e.KV.Key)
			}
		}
		rl.states = append(rl.states, next)
		state = next
	}
	return rl, problems
}

// stateAt is the keyspace at rev; ok is false beyond Covered.
func (rl *revisionLog) stateAt(rev int64) (map[string]KV, bool) {
	if rev < 1 || rev > rl.Covered {
		return nil, false
	}
	return rl.states[rev], true
}

func describeEvents(evs []Event) string {
	s := "["
	for i, e := range evs {
		if i > 0 {
			s += " "
		}
		if e.Type == EventPut {
			s += fmt.Sprintf("put %s=%s@%d", e.KV.Key, e.KV.Value, e.KV.ModRev)
		} else {
			s += fmt.Sprintf("delete %s@%d", e.KV.Key, e.KV.ModRev)
		}
		if e.Prev != nil {
			s += fmt.Sprintf("(prev %s@%d)", e.Prev.Value, e.Prev.ModRev)
		}
	}
	return s + "]"
}

// checkWatch checks one watcher's responses: ordered (revisions increase),
// unique (no key twice in a revision, no revision twice), atomic (a
// revision's events in one response), reliable (no revision the cluster
// made is skipped, unless the watch was told it was compacted), resumable
// (the same across the client's reconnections to a restarted member),
// bookmarkable (a progress notification at P comes after every event up
// to P and before every event after P) and prev_kv correct. finalRev is
// the last revision of the run; a watcher must have delivered it.
//
// A missing prev_kv is allowed when the previous revision may have been
// compacted by the time of the response (etcd omits prev_kv it cannot
// read); a wrong one never is.
func checkWatch(w *WatchLog, rl *revisionLog, compactions []Compaction, finalRev int64) []string {
	// compactedBy is the highest compaction revision requested by time t.
	compactedBy := func(t int64) int64 {
		var rev int64
		for _, c := range compactions {
			if c.Time <= t {
				rev = max(rev, c.Rev)
			}
		}
		return rev
	}
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("watch %s: ", w.Member)+fmt.Sprintf(format, args...))
	}
	// gap reports the revisions the cluster made in [from, to) that the
	// watcher did not deliver.
	gap := func(from, to int64, where string) {
		for r := from; r < to; r++ {
			if _, ok := rl.Events[r]; ok {
				bad("revision %d never delivered (%s)", r, where)
				return
			}
		}
	}
	next := w.StartRev // the lowest revision the watcher may deliver next
	var lastRev int64
	for i, resp := range w.Responses {
		switch {
		case resp.Compacted != 0:
			// The watch failed: its start revision was compacted. It is
			// re-opened at the compaction revision; what lies below is
			// legitimately lost to this watcher.
			next = max(next, resp.Compacted)
			continue
		case resp.Progress:
			if resp.HeaderRev < lastRev {
				bad("progress notification at %d after an event at %d", resp.HeaderRev, lastRev)
			}
			gap(next, resp.HeaderRev+1, fmt.Sprintf("before progress notification %d", resp.HeaderRev))
			next = max(next, resp.HeaderRev+1)
			continue
		}
		seen := map[string]bool{}
		for j, e := range resp.Events {
			rev := e.KV.ModRev
			if j > 0 && rev == resp.Events[j-1].KV.ModRev {
				if seen[e.KV.Key] {
					bad("key %s twice at revision %d (response %d)", e.KV.Key, rev, i)
				}
				seen[e.KV.Key] = true
				continue
			}
			seen = map[string]bool{e.KV.Key: true}
			switch {
			case rev == lastRev:
				bad("revision %d split across responses or delivered twice (response %d)", rev, i)
			case rev < lastRev:
				bad("revision %d after %d: out of order (response %d)", rev, lastRev, i)
			case rev < next:
				bad("revision %d delivered below %d, where the watch stood", rev, next)
			default:
				gap(next, rev, fmt.Sprintf("before %d", rev))
			}
			lastRev = max(lastRev, rev)
			next = max(next, rev+1)
		}
		for _, e := range resp.Events {
			prior, ok := rl.stateAt(e.KV.ModRev - 1)
			if !ok {
				continue
			}
			want, existed := prior[e.KV.Key]
			switch {
			case !existed && e.Prev != nil:
				bad("prev_kv of %s@%d is %s@%d, but the key did not exist", e.KV.Key, e.KV.ModRev, e.Prev.Value, e.Prev.ModRev)
			case existed && e.Prev == nil && e.KV.ModRev-1 < compactedBy(resp.Time):
				// compacted: etcd leaves prev_kv out
			case existed && (e.Prev == nil || *e.Prev != want):
				bad("prev_kv of %s@%d is %v, want %s@%d", e.KV.Key, e.KV.ModRev, e.Prev, want.Value, want.ModRev)
			}
		}
	}
	gap(next, finalRev+1, fmt.Sprintf("by the end of the run at %d", finalRev))
	return problems
}

// checkAcknowledged checks that every acknowledged write is in the
// revision log at the revision it was acknowledged with (no acknowledged
// write lost). Writes whose revision no watcher delivered (every watcher
// compacted past it) are counted as unverified, not passed.
func checkAcknowledged(ops []Op, rl *revisionLog) (problems []string, unverified int) {
	for _, op := range ops {
		if op.Resp.Unknown {
			continue
		}
		var puts []TxnOp
		switch op.Req.Kind {
		case opPut:
			puts = []TxnOp{{Kind: opPut, Key: op.Req.Key, Value: op.Req.Value}}
		case opTxn:
			branch := op.Req.Then
			if !op.Resp.Succeeded {
				branch = op.Req.Else
			}
			for _, t := range branch {
				if t.Kind == opPut {
					puts = append(puts, t)
				}
			}
		case opDelete:
			if op.Resp.Deleted > 0 {
				puts = []TxnOp{{Kind: opDelete, Key: op.Req.Key}}
			}
		}
		if len(puts) == 0 {
			continue
		}
		evs, ok := rl.Events[op.Resp.Rev]
		if !ok {
			unverified++
			continue
		}
		for _, p := range puts {
			found := false
			for _, e := range evs {
				if e.KV.Key == p.Key && ((p.Kind == opPut && e.Type == EventPut && e.KV.Value == p.Value) ||
					(p.Kind == opDelete && e.Type == EventDelete)) {
					found = true
				}
			}
			if !found {
				problems = append(problems, fmt.Sprintf("acknowledged %s at revision %d is not what revision %d holds: %s",
					describeRequest(&op.Req), op.Resp.Rev, op.Resp.Rev, describeEvents(evs)))
			}
		}
	}
	return problems, unverified
}

// checkStaleReads checks every read at a past revision against the
// keyspace the revision log holds at that revision. Reads beyond the
// covered revisions are counted as unverified.
func checkStaleReads(stale []StaleRead, rl *revisionLog) (problems []string, unverified int) {
	for _, s := range stale {
		state, ok := rl.stateAt(s.Rev)
		if !ok {
			unverified++
			continue
		}
		kvs := map[string]keyValue{}
		for k, v := range state {
			kvs[k] = keyValue{Value: v.Value, ModRev: v.ModRev}
		}
		want, count, more := rangeKVs(kvs, s.Key, s.End, s.Limit)
		if !kvsEqual(want, s.KVs) || count != s.Count || more != s.More {
			got := Response{Rev: s.Rev, KVs: s.KVs, Count: s.Count, More: s.More}
			exp := Response{Rev: s.Rev, KVs: want, Count: count, More: more}
			problems = append(problems, fmt.Sprintf("stale read of %s..%s at revision %d: got %s, the revision held %s",
				s.Key, s.End, s.Rev, describeResponse(&got), describeResponse(&exp)))
		}
	}
	return problems, unverified
}

// Probe is one member's revision as a prober saw it; Gen counts the
// member's replacements (a replaced member starts from nothing).
type Probe struct {
	Member string
	Gen    int
	Time   int64
	Rev    int64
}

// checkRevisionMonotonic checks that no member's revision ever decreased,
// across its restarts included.
func checkRevisionMonotonic(probes []Probe) []string {
	type id struct {
		m string
		g int
	}
	last := map[id]Probe{}
	var problems []string
	sort.SliceStable(probes, func(i, j int) bool { return probes[i].Time < probes[j].Time })
	for _, p := range probes {
		k := id{p.Member, p.Gen}
		if l, ok := last[k]; ok && p.Rev < l.Rev {
			problems = append(problems, fmt.Sprintf("revision of %s went back from %d (at %v) to %d (at %v)",
				p.Member, l.Rev, time.Duration(l.Time), p.Rev, time.Duration(p.Time)))
		}
		if p.Rev >= last[k].Rev {
			last[k] = p
		}
	}
	return problems
}

// linearizationInput turns the recorded ops into porcupine operations.
// Failed reads are dropped (they change nothing). A failed write may have
// been applied: if the revision log shows one of its unique values, it
// was, at that revision, and it is checked as such; if the log is complete
// to the end of the run and shows none, it was not and is dropped;
// otherwise it stays open until the end of the history with both outcomes.
func linearizationInput(ops []Op, rl *revisionLog, finalRev int64) []porcupine.Operation {
	var end int64
	for _, op := range ops {
		end = max(end, op.Return)
	}
	where := map[string]int64{} // value -> revision it was written at
	for rev, evs := range rl.Events {
		for _, e := range evs {
			if e.Type == EventPut {
				where[e.KV.Value] = rev
			}
		}
	}
	var out []porcupine.Operation
	for _, op := range ops {
		req, resp := op.Req, op.Resp
		ret := op.Return
		if resp.Unknown {
			if req.Kind == opRange {
				continue
			}
			ret = end + int64(time.Second)
			var vals []string
			switch req.Kind {
			case opPut:
				vals = []string{req.Value}
			case opTxn:
				for _, t := range req.Then {
					if t.Kind == opPut {
						vals = append(vals, t.Value)
					}
				}
			}
			if len(vals) > 0 {
				rev, seen := where[vals[0]]
				switch {
				case seen && req.Kind == opPut:
					resp = Response{Rev: rev}
				case seen:
					resp = Response{Rev: rev, Succeeded: true, Results: make([][]KV, len(req.Then))}
				case rl.Covered >= finalRev:
					continue // never applied: the complete log does not hold its value
				}
			}
		}
		out = append(out, porcupine.Operation{ClientId: op.Client, Input: &req, Output: &resp, Call: op.Call, Return: ret})
	}
	return out
}

// checkLinearizable runs porcupine over the KV, Txn and Lease history for
// at most timeout; on Illegal (and on Unknown) it writes the visualization
// to vizPath when vizPath is set.
func checkLinearizable(ops []Op, rl *revisionLog, finalRev int64, timeout time.Duration, vizPath string) (porcupine.CheckResult, error) {
	in := linearizationInput(ops, rl, finalRev)
	model := etcdModel.ToModel()
	res, info := porcupine.CheckOperationsVerbose(model, in, timeout)
	if res != porcupine.Ok && vizPath != "" {
		if err := porcupine.VisualizePath(model, info, vizPath); err != nil {
			return res, err
		}
	}
	return res, nil
}

// noTimeout is for tests of hand-made histories, which finish at once.
const noTimeout = time.Duration(math.MaxInt64)
