package watch

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Source is the revisioned event feed of the KV store.
//
// Revisions: every committed revision has at least one event; all events of
// revision r carry Kv.ModRevision == r (a DELETE event's Kv is the tombstone:
// key and ModRevision set). Rev() only returns revisions whose events
// Events can already read.
type Source interface {
	// Rev returns the current revision.
	Rev() int64
	// CompactedRev returns the compacted revision: events at or below it
	// are gone; a watcher may start from CompactedRev()+1 on.
	CompactedRev() int64
	// Events returns the events of revisions [fromRev, toRev] for keys in
	// [key, end) (end nil: the single key; end "\x00": every key >= key), at
	// most maxEvents events but never splitting a revision (one revision
	// larger than maxEvents comes whole), in revision order, with PrevKv
	// filled. next is the revision to continue from: every matching event
	// below next has been returned, and next > fromRev. It returns an error
	// for which errors.Is(err, Config.ErrCompacted) holds if fromRev <=
	// CompactedRev(). The caller owns the returned slice.
	Events(fromRev, toRev int64, key, end []byte, maxEvents int) (evs []mvccpb.Event, next int64, err error)
	// Subscribe returns a live feed of every revision committed after
	// Subscribe returns (one []mvccpb.Event per revision, PrevKv filled, in
	// revision order), delivered without ever blocking the writer.
	Subscribe() Subscription
}

// Subscription is a live feed from Source.Subscribe.
type Subscription interface {
	// C delivers one revision's events per receive. The receiver owns the
	// slice and must not modify the events (they are shared read-only).
	C() <-chan []mvccpb.Event
	// Lagging reports that the buffer overflowed: the subscriber missed
	// events from revision from on and must catch up with Events, then call
	// Resume. While lagging, C delivers no revision >= from.
	Lagging() (lagging bool, from int64)
	// Resume delivers live events again from revision rev on. Revisions at
	// or above rev that were committed while lagging should be replayed; the
	// Server tolerates an implementation that does not (it reads Rev() after
	// Resume and fills any gap from Events), and tolerates duplicates.
	Resume(rev int64)
	// Close releases the subscription; C need not be closed.
	Close()
}

// ErrCompacted is the default Config.ErrCompacted: a Source may return it
// (or wrap it) when asked for compacted events.
var ErrCompacted = errors.New("watch: required revision has been compacted")

// Cancel reasons with etcd v3.6's exact texts (mvcc package errors), sent in
// created+canceled responses with watch_id -1.
var (
	// ErrWatcherDuplicateID: a client-chosen watch_id is in use on the stream.
	ErrWatcherDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	// ErrEmptyWatcherRange: range_end <= key.
	ErrEmptyWatcherRange = errors.New("mvcc: watcher range is empty")
	// ErrTooManyWatchers: the stream already has Config.MaxWatchersPerStream
	// watchers. etcd has no such limit; the text is MetaStore's.
	ErrTooManyWatchers = errors.New("watch: too many watchers on the stream")
)

// Defaults, filled in one place (Config.withDefaults).
const (
	// DefaultProgressNotifyInterval is etcd's --experimental-watch-progress-notify-interval.
	DefaultProgressNotifyInterval = 10 * time.Minute
	// MinProgressNotifyInterval is etcd's minWatchProgressInterval: shorter
	// intervals are raised to it with a warning, as etcd does.
	MinProgressNotifyInterval = 100 * time.Millisecond
	// DefaultMaxWatchersPerStream: etcd has no limit; a watcher costs about
	// 0.5 KiB here, so the default caps one stream's watchers near 50 MiB
	// while leaving every realistic client (Kubernetes opens one watcher per
	// resource type) far below it.
	DefaultMaxWatchersPerStream = 100_000
	// DefaultMaxRequestBytes is etcd's default --max-request-bytes (1.5 MiB).
	DefaultMaxRequestBytes = 1536 * 1024
	// DefaultSendQueueResponses bounds one stream's outbound queue.
	DefaultSendQueueResponses = 1024
	// DefaultCatchUpBatchEvents is etcd's watchBatchMaxRevs scale.
	DefaultCatchUpBatchEvents = 1000
	// DefaultCatchUpConcurrency bounds concurrent Source.Events calls made
	// for catch-up across all streams of a Server.
	DefaultCatchUpConcurrency = 4
)

// ctrlSlackResponses is how far control responses (created, canceled,
// progress) may go beyond Config.SendQueueResponses, so that a queue full of
// events never blocks them (etcd's ctrlStreamBufLen).
const ctrlSlackResponses = 16

// Config configures a Server. The zero value of each field means its default.
type Config struct {
	// Header fills cluster_id, member_id, raft_term and the given revision.
	// Default: a header carrying only the revision.
	Header func(rev int64) *pb.ResponseHeader
	// ProgressNotifyInterval is the period of progress notifications to idle,
	// synced progress_notify watchers (plus up to 10% jitter, as etcd).
	// Default 10m; values below 100ms are raised to 100ms.
	ProgressNotifyInterval time.Duration
	// MaxWatchersPerStream: creating one more is refused with a
	// created+canceled response (ErrTooManyWatchers). Default 100000.
	MaxWatchersPerStream int
	// MaxRequestBytes: a response larger than this is fragmented when the
	// watcher asked for fragment; catch-up batches are cut into responses of
	// about this size at revision boundaries. etcd passes its
	// --max-request-bytes plus 512 KiB gRPC overhead. Default 1.5 MiB.
	MaxRequestBytes int
	// SendQueueResponses bounds each stream's outbound queue, in responses.
	// Default 1024.
	SendQueueResponses int
	// CatchUpBatchEvents is the maxEvents of one catch-up Source.Events call.
	// Default 1000.
	CatchUpBatchEvents int
	// CatchUpConcurrency bounds concurrent catch-up Source.Events calls
	// across all streams. Default 4.
	CatchUpConcurrency int
	// ErrCompacted is the Source's compaction error (matched with
	// errors.Is). Default: this package's ErrCompacted.
	ErrCompacted error
	// Authorize, when set, is called at watch creation; a non-nil error
	// refuses the watch with cancel_reason err.Error(). Return the error etcd
	// would (rpctypes.ErrGRPCPermissionDenied, ...): etcd uses its text.
	// Default nil: allow.
	Authorize func(ctx context.Context, key, end []byte) error
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.Header == nil {
		c.Header = func(rev int64) *pb.ResponseHeader { return &pb.ResponseHeader{Revision: rev} }
	}
	if c.ProgressNotifyInterval == 0 {
		c.ProgressNotifyInterval = DefaultProgressNotifyInterval
	}
	if c.MaxWatchersPerStream == 0 {
		c.MaxWatchersPerStream = DefaultMaxWatchersPerStream
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.SendQueueResponses == 0 {
		c.SendQueueResponses = DefaultSendQueueResponses
	}
	if c.CatchUpBatchEvents == 0 {
		c.CatchUpBatchEvents = DefaultCatchUpBatchEvents
	}
	if c.CatchUpConcurrency == 0 {
		c.CatchUpConcurrency = DefaultCatchUpConcurrency
	}
	if c.ErrCompacted == nil {
		c.ErrCompacted = ErrCompacted
	}
	return c
}

// Validate reports every invalid field (after defaults), not just the first.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.ProgressNotifyInterval < 0 {
		errs = append(errs, fmt.Errorf("watch: ProgressNotifyInterval %s < 0", c.ProgressNotifyInterval))
	}
	if c.MaxWatchersPerStream < 0 {
		errs = append(errs, fmt.Errorf("watch: MaxWatchersPerStream %d < 0", c.MaxWatchersPerStream))
	}
	if c.MaxRequestBytes < 0 {
		errs = append(errs, fmt.Errorf("watch: MaxRequestBytes %d < 0", c.MaxRequestBytes))
	}
	if c.SendQueueResponses < 0 {
		errs = append(errs, fmt.Errorf("watch: SendQueueResponses %d < 0", c.SendQueueResponses))
	}
	if c.CatchUpBatchEvents < 0 {
		errs = append(errs, fmt.Errorf("watch: CatchUpBatchEvents %d < 0", c.CatchUpBatchEvents))
	}
	if c.CatchUpConcurrency < 0 {
		errs = append(errs, fmt.Errorf("watch: CatchUpConcurrency %d < 0", c.CatchUpConcurrency))
	}
	return errors.Join(errs...)
}
