// Package watch serves etcd's Watch gRPC service (pb.WatchServer) over a
// revisioned event feed, Source, that the KV store implements.
//
// # Contract
//
// Every etcd client (clientv3, etcdctl, Kubernetes) must see etcd v3.6's
// behaviour. For each watcher a client receives, in this order: the created
// response (header revision = store revision at creation), then every event
// matching its range and filters with revision >= its start revision, each
// exactly once, in revision order, a revision's events never split across
// responses (unless the watcher asked for fragment and the revision alone is
// larger than MaxRequestBytes), until it is canceled by the client, by
// compaction (compact_revision set), or the stream ends.
//
// Numbers a client sees: the header revision of an event response is the
// last revision it covers (live: the events' revision, as etcd; catch-up:
// never more than was sent, because clientv3 resumes after it); of a
// progress notification, the last revision fanned out. compact_revision is
// Source.CompactedRev()+1, the smallest revision a watch may start from
// (clientv3: "the minimum revision the watcher may receive"), which is
// etcd's number when the store can serve events at its compaction revision
// and reports CompactedRev as one below it.
//
// # Design
//
// One Subscription per Server feeds one dispatcher goroutine. The dispatcher
// keeps the synced watchers in a watcherGroup (single keys in a map, ranges in
// an interval tree, watchers with the same range sharing one keyGroup) and
// fans each revision out to the matching groups only: per revision the cost is
// O(E * (log G + k)) to match E events against G distinct ranges (k matches)
// plus O(W) for the W watchers that receive something. Watchers that match
// nothing cost nothing.
//
// The dispatcher never blocks: it appends to a stream's bounded send queue
// (Config.SendQueueResponses) without waiting. When the queue is full the
// watcher becomes unsynced at that revision, and the stream's catch-up
// goroutine reads its history from Source.Events in batches of
// Config.CatchUpBatchEvents (watchers of the stream with the same range share
// one read), waiting for queue space as the client drains it. So a slow client
// costs at most one queue plus one batch, never an unbounded pile of events
// (etcd #17529), and no lock that writers or the dispatcher need is held while
// history is read (etcd #22264).
//
// When the Subscription itself lags, the dispatcher replays the missed
// revisions from Source.Events (one read for all watchers) before resuming
// it; a gap or duplicate in the feed is detected by revision and handled the
// same way, so the feed is trusted for nothing but order.
//
// # Invariants (Server.mu held)
//
//   - dispatchedRev: every revision <= it has been offered to every synced
//     watcher; it only grows.
//   - A synced watcher w has been sent every matching event below w.next, and
//     w.next > dispatchedRev; the dispatcher sends revision r to it only if
//     r >= w.next, then sets w.next = r+1.
//   - An unsynced watcher is owned by its stream's catch-up goroutine, which
//     alone advances w.next; it rejoins the synced group, under Server.mu,
//     only once w.next > dispatchedRev, so nothing is skipped or repeated.
//   - Responses for one watcher pass through one FIFO queue: created first,
//     canceled last, nothing after canceled.
//   - A WatchProgressRequest is answered (watch_id -1, header revision =
//     dispatchedRev) only once every watcher of the stream is synced and
//     dispatchedRev has reached the store's revision at the request; until
//     then it is deferred (etcd 3.6 drops it instead; deferring is
//     indistinguishable to clients, which retry).
//
// Lock order: Server.mu before stream.q.mu. Source methods are never called
// with stream.q.mu held, Source.Events never with Server.mu held.
package watch
