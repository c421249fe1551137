// Package engine is MetaStore's storage engine: one RocksDB database, opened
// with the column families of MetaStore's data layout and tuned from a
// tuning.Options preset. It is the only package that imports grocksdb, and
// so the only one that uses cgo.
//
// Contract:
//
//   - C memory never escapes a call. Every value handed out (Get results,
//     iterator keys and values) is Go memory. Get returns a fresh copy the
//     caller owns; an iterator's Key and Value stay valid only until the
//     iterator moves or closes, like pebble's.
//   - Errors are values. A Write with sync=true that fails leaves the
//     durability of that batch and of every earlier unsynced batch unknown;
//     callers MUST treat it as fatal and stop the process (etcd does the
//     same for a failed WAL fsync). The engine does not retry.
//   - Iterators and snapshots pin engine state. Close refuses (ErrOpenHandles)
//     while any is open, because RocksDB aborts the process when a database
//     is closed under a live iterator.
//   - All methods of DB are safe for concurrent use. A Batch, an Iterator
//     and a Snapshot's methods are not: each belongs to one goroutine.
//
// Column families (see docs/ARCHITECTURE.md for the key encodings):
//
//	kv       latest version of every key; point lookups, bloom-filtered
//	history  superseded versions, ordered by key then newest revision first
//	events   the revision log that feeds watches and drives compaction
//	raft     raft log entries, hard state and snapshot metadata
//	meta     applied index, compaction progress, cluster identity
//	lease    leases and their remaining TTL checkpoints
package engine
