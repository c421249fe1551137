package server

// What a member does with a damaged write-ahead log. Both of its engines
// (the raft log at member/raft, the replicated state at member/engine) open
// with RocksDB's tolerate-corrupted-tail WAL recovery (tuning's default),
// chosen over the alternatives:
//
//   - A torn last record (a crash mid-write) is dropped and the engine
//     opens. Nothing acknowledged is in it: a synced write returns only once
//     its whole record is on disk, and the data engine's unsynced records are
//     replayed from the raft log above its persisted applied index.
//   - Damage anywhere else (a bad checksum followed by more records) stops
//     the open with RocksDB's "Corruption: ..." error, which
//     damagedEngineError turns into advice. point-in-time recovery would
//     instead open silently at the last good record, dropping acknowledged
//     raft entries or applied state after it (the raft log might then vote
//     or acknowledge again what it had forgotten); skip-any-corrupted-records
//     would open with a hole; absolute-consistency would also refuse the
//     torn tail every crash leaves, so a member could not restart after a
//     power loss.

import (
	"errors"
	"fmt"
	"strings"
)

// errEngineDamaged marks an engine that RocksDB refused to open as corrupt.
var errEngineDamaged = errors.New("server: engine damaged")

// damagedEngineError explains a corruption error from opening one of the
// member's engines; other errors pass through unchanged.
func damagedEngineError(which string, err error) error {
	if err == nil || !strings.Contains(err.Error(), "Corruption:") {
		return err
	}
	return fmt.Errorf("%w: the %s is damaged before its last record (not a torn tail from a crash, which would be dropped), so this member cannot start without losing acknowledged data; "+
		"remove the member from the cluster, wipe its data directory and add it back, or restore it from a snapshot: %w", errEngineDamaged, which, err)
}

// checkEngineCoversLog refuses to start a member whose data engine has
// applied less than its raft log can replay: the entries between are in
// neither, so raft would hand the applier a gap. A damaged data-engine WAL
// that RocksDB still opened (the damage looked like a torn tail) after the
// log was truncated is the way to get here; the error says what to do
// instead of the applier panicking later.
func checkEngineCoversLog(applied uint64, log interface{ FirstIndex() (uint64, error) }) error {
	first, err := log.FirstIndex()
	if err != nil {
		return err
	}
	if applied+1 >= first {
		return nil
	}
	return fmt.Errorf("%w: the data engine is damaged or behind its raft log: it has applied up to index %d but the raft log starts at %d, so entries %d to %d are in neither; "+
		"remove the member from the cluster, wipe its data directory and add it back, or restore it from a snapshot", errEngineDamaged, applied, first, applied+1, first-1)
}
