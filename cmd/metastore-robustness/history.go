package main

import (
	"sync"
	"time"
)

// A history is what the clients saw: every KV, Txn and Lease request with
// its response (or its failure) between two readings of one monotonic
// clock, the stale reads (at a past revision, checked against the
// revisions the watches reconstruct, not by porcupine), and every watch
// response of every member.

// Op is one recorded request.
type Op struct {
	Client       int
	Req          Request
	Resp         Response
	Call, Return int64 // ns since the recorder's start, monotonic
}

// StaleRead is a range served at a past revision: the kvs must be those
// the keyspace held at Rev.
type StaleRead struct {
	Client   int
	Key, End string
	Limit    int64
	Rev      int64
	KVs      []KV
	Count    int64
	More     bool
}

// EventType is a watch event's type.
type EventType uint8

const (
	EventPut EventType = iota
	EventDelete
)

// Event is one watch event.
type Event struct {
	Type EventType
	KV   KV  // for a delete, Value is "" and ModRev the delete's revision
	Prev *KV // prev_kv; nil when the key did not exist
}

// WatchResp is one watch response as a watcher received it.
type WatchResp struct {
	Time      int64 // ns since start
	HeaderRev int64
	Events    []Event
	Progress  bool  // a progress notification (no events)
	Compacted int64 // the watch failed: its start revision was compacted below this
	Err       string
}

// WatchLog is everything one watcher of one member received, in order;
// StartRev is the revision its first watch started at. A watch that ends
// with a compaction error is re-opened at the compaction revision: the
// responses of every incarnation follow each other here.
type WatchLog struct {
	Member    string
	StartRev  int64
	Responses []WatchResp
}

// Recorder collects a history from concurrent clients.
type Recorder struct {
	start time.Time
	mu    struct {
		sync.Mutex
		ops         []Op
		stale       []StaleRead
		compactions []Compaction
	}
}

func newRecorder() *Recorder { return &Recorder{start: time.Now()} }

// now is nanoseconds since the start on the monotonic clock (time.Since
// reads the monotonic reading time.Now carries).
func (r *Recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *Recorder) add(op Op) {
	r.mu.Lock()
	r.mu.ops = append(r.mu.ops, op)
	r.mu.Unlock()
}

func (r *Recorder) addStale(s StaleRead) {
	r.mu.Lock()
	r.mu.stale = append(r.mu.stale, s)
	r.mu.Unlock()
}

// Compaction is a compaction the suite requested: from Time on, the
// cluster may have compacted below Rev.
type Compaction struct {
	Time, Rev int64
}

func (r *Recorder) addCompaction(c Compaction) {
	r.mu.Lock()
	r.mu.compactions = append(r.mu.compactions, c)
	r.mu.Unlock()
}

// History is a finished recording.
type History struct {
	Ops         []Op
	Stale       []StaleRead
	Watches     []*WatchLog
	Compactions []Compaction
}

func (r *Recorder) history(watches []*WatchLog) History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return History{Ops: append([]Op(nil), r.mu.ops...), Stale: append([]StaleRead(nil), r.mu.stale...), Watches: watches,
		Compactions: append([]Compaction(nil), r.mu.compactions...)}
}
