// Package mvcc is etcd's multi-version key-value store (revisions, MVCC
// key-values, txns, compaction, the watch event feed and leases' key
// attachments) on the engine, with no in-memory index of the keys (only
// live-key counts per bucket of about 1,024 keys): it is
// built for key spaces much larger than memory. Requests and responses are
// etcd's protobuf types, and every answer matches etcd v3.6's
// (server/etcdserver/txn and server/storage/mvcc), quirks included.
//
// # Contract
//
//   - Apply methods (Put, DeleteRange, Txn, Compact, LeaseGrant,
//     LeaseRevoke, LeaseCheckpoint, ApplyMeta) are called by ONE goroutine
//     in raft-index order. index is the raft entry's index; an index <=
//     AppliedIndex() is a replay and returns ErrAlreadyApplied with no
//     effect. An entry that fails (validation, missing lease, ...) still
//     counts as applied: it fails the same way when replayed.
//   - Reads (Range, Events, HashKV, Lease*) run on any goroutine, take no
//     global lock and see a consistent revision.
//   - Each revision is ONE atomic engine batch holding its data, its event
//     list (whose key is the new current revision) and the applied index. Batches are
//     written without fsync: the raft log below is the durable record.
//     After a crash the engine holds a prefix of the batches (RocksDB's WAL
//     recovers a prefix), whose last applied index tells raft where to
//     replay from. Entries that changed nothing persist their index with
//     the next batch, so a crash may replay them: they change nothing
//     again.
//   - Request validation errors are etcd's gRPC errors (rpctypes); apply
//     errors carry etcd's internal texts (ErrCompacted, ErrLeaseNotFound,
//     ErrKeyNotFound, ...), for the gRPC layer to map as etcd's togRPCError.
//
// # Data layout
//
// mvcc owns CFKV, CFHistory, CFEvents and CFLease, and the keys under
// "mvcc/" in CFMeta. Encodings are in encoding.go.
//
//	CFKV      userkey -> record of its latest version (put or tombstone)
//	CFHistory escape(userkey) 00 01 bigendian(^main) -> record of a
//	          superseded version; a key's versions sort newest first
//	CFEvents  bigendian(main) -> the revision's changes: type, sub, key, the
//	          main revision of the version at main-1 (if a put)
//	CFLease   'l' id -> ttl, remaining ttl; 'k' id userkey -> attachment
//	CFMeta    mvcc/applied_index, mvcc/compact_scheduled,
//	          mvcc/compact_finished, mvcc/compact_cursor (and mvcc/current_rev,
//	          read but no longer written: the current revision is the key
//	          of the last event list)
//
// A record is: flags (tombstone), mod revision (main, sub), create
// revision, version, lease, value. Worked example, starting from an empty
// store at revision 1:
//
//	Put foo=bar           rev 2: KV foo=put@2.0 c=2 v=1
//	                             Events 2=[PUT foo]
//	Put foo=baz (lease 7) rev 3: History foo@2=put@2.0; KV foo=put@3.0 c=2 v=2 l=7
//	                             Events 3=[PUT foo sup=2]; Lease k,7,foo
//	Delete foo            rev 4: History foo@3=put@3.0; KV foo=tombstone@4.0
//	                             Events 4=[DELETE foo sup=3]; Lease k,7,foo gone
//	Put foo=new           rev 5: History foo@4=tombstone@4.0; KV foo=put@5.0 c=5 v=1
//	                             Events 5=[PUT foo]
//
// A read at the latest revision is one CFKV Get. A read at revision 3
// finds KV foo=put@5 (newer than 3) and seeks CFHistory at foo@^3, landing
// on foo@3; at revision 4 it lands on the tombstone: no key. An event's KV
// is the record at (key, main), in CFKV or CFHistory; its prev KV the one
// at (key, superseded).
//
// # Invariants
//
//   - Revisions: the store starts at 1; each Put, each DeleteRange that
//     deletes something, each Txn that writes, each LeaseRevoke that
//     deletes keys takes the next main revision; sub revisions number the
//     changes inside it. Rev() is published only after the batch is
//     written, together with the compaction revision (one atomic pointer).
//   - A key's (main revision) names one stored version: the last one the
//     revision wrote. (etcd lets a txn write a key twice in one revision in
//     one corner; the earlier version is then inline in its event, see
//     eventEntry.)
//   - Every superseded version moves to CFHistory in the batch that
//     supersedes it; only the compactor deletes versions, and only ones no
//     read at or above the compaction revision needs (compact.go).
//   - Lease attachments equal the set of live keys carrying each lease.
//
// # Count index
//
// The only in-memory structure over the keys: live-key counts per bucket
// of about 1,024 keys, so the count every range returns costs two bucket
// walks, a sum and a correction from the events instead of a walk of the
// whole range (countindex.go).
//
// # Locks
//
// Store.mu is the writer lock, held by each apply and by each compaction
// batch (so the compactor's "is this tombstone the latest version?" cannot
// race a write). Readers hold no lock: they load the published revision,
// read the engine (which may have moved ahead: newer records are resolved
// through CFHistory), and re-check the compaction revision when they used
// CFHistory (read.go). Leases and subscriptions have their own small
// mutexes; the subscription lock is taken after Store.mu.
package mvcc
