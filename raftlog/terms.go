package raftlog

import (
	"sort"

	"go.uber.org/zap"
)

// termRun says that the entries from index first up to the next run's first
// (or the log's last index) all carry term.
type termRun struct {
	first, term uint64
}

// termIndex is the run-length list of the terms of the log [dummy, last],
// where dummy is the compacted-to index whose term raft still needs for
// matching (the "dummy entry" of raft's MemoryStorage). Terms in a raft log
// never decrease, so a log of any length written under a few leaders is a
// few runs, and Term(i) is a binary search in memory.
//
// Worked example: the log 3:3 4:4 5:4 6:6 (index:term), compacted to 3, is
//
//	runs = [{3,3} {4,4} {6,6}], last = 6
//
// Appending 5:7 (a conflict at 5) drops runs starting at >= 5, then adds
// {5,7}: runs = [{3,3} {4,4} {5,7}], last = 5. Compacting to 4 keeps the
// term of 4 as the new dummy: runs = [{4,4} {5,7}].
//
// Invariants: len(runs) >= 1; runs[0].first is the dummy index; firsts and
// terms strictly increase; runs[len-1].first <= last.
type termIndex struct {
	runs []termRun
	last uint64
}

func newTermIndex(dummyIndex, dummyTerm uint64) termIndex {
	return termIndex{runs: []termRun{{dummyIndex, dummyTerm}}, last: dummyIndex}
}

func (t *termIndex) dummy() uint64 { return t.runs[0].first }

// term returns the term of index. REQUIRES: dummy() <= index <= last.
func (t *termIndex) term(index uint64) uint64 {
	k := sort.Search(len(t.runs), func(k int) bool { return t.runs[k].first > index }) - 1
	return t.runs[k].term
}

// truncateFrom drops the runs of indexes >= index and reports whether any
// run started there, i.e. whether persisted runs must be deleted.
// REQUIRES: dummy() < index <= last+1.
func (t *termIndex) truncateFrom(index uint64) (dropped bool) {
	k := sort.Search(len(t.runs), func(k int) bool { return t.runs[k].first >= index })
	dropped = k < len(t.runs)
	t.runs = t.runs[:k]
	t.last = index - 1
	return dropped
}

// append extends the log by one entry at last+1 and returns whether it
// starts a new run (which must then be persisted).
func (t *termIndex) append(lg *zap.Logger, index, term uint64) (newRun bool) {
	prev := t.runs[len(t.runs)-1]
	if index != t.last+1 || term < prev.term {
		lg.Panic("raftlog: term index append breaks log order",
			zap.Uint64("index", index), zap.Uint64("term", term),
			zap.Uint64("last-index", t.last), zap.Uint64("last-term", prev.term))
	}
	t.last = index
	if term == prev.term {
		return false
	}
	t.runs = append(t.runs, termRun{index, term})
	return true
}

// compact makes index the new dummy. REQUIRES: dummy() <= index <= last.
func (t *termIndex) compact(index uint64) {
	k := sort.Search(len(t.runs), func(k int) bool { return t.runs[k].first > index }) - 1
	runs := make([]termRun, 0, len(t.runs)-k)
	runs = append(runs, termRun{index, t.runs[k].term})
	t.runs = append(runs, t.runs[k+1:]...)
}
