package server

import (
	"context"
	"runtime/debug"
	"time"

	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
)

// maxLogSamples bounds the (index, bytes) samples the truncation policy
// keeps to find a cut by size: one a second, so an hour of history.
const maxLogSamples = 3600

// logSample is the applied index and the applied entry bytes up to it.
type logSample struct{ index, bytes uint64 }

// truncatePolicy decides when and where the raft log is truncated. As
// etcd, a truncation is due after SnapshotCount applied entries and keeps
// SnapshotCatchUpEntries behind the applied index for followers that lag a
// little. Because entries can be large (a 128-put transaction is ~35 KiB),
// both are also bounded in bytes: a truncation is due after
// SnapshotBytes of applied entries, and the entries kept are cut to about
// SnapshotCatchUpBytes, though never below the last sample's (about one
// second of entries), so a follower that keeps up never needs a snapshot.
// Sizes are known at sample granularity (one a second). Not safe for
// concurrent use: the truncation loop owns it.
type truncatePolicy struct {
	count, catchUp          uint64 // entries
	countBytes, catchUpByte uint64 // bytes; 0 turns the byte bound off

	lastIndex, lastBytes uint64 // applied state at the last truncation
	lastCut              uint64 // where the log was last truncated
	samples              []logSample
}

func newTruncatePolicy(c *Config) *truncatePolicy {
	return &truncatePolicy{count: c.SnapshotCount, catchUp: c.SnapshotCatchUpEntries,
		countBytes: c.SnapshotBytes, catchUpByte: c.SnapshotCatchUpBytes}
}

// observe records the applied index and bytes of one tick and returns the
// index to truncate the log to, if a truncation is due.
func (p *truncatePolicy) observe(applied, bytes uint64) (cut uint64, due bool) {
	if n := len(p.samples); n == 0 || p.samples[n-1].index < applied {
		if n == maxLogSamples {
			p.samples = append(p.samples[:0], p.samples[1:]...)
		}
		p.samples = append(p.samples, logSample{applied, bytes})
	}
	byCount := applied >= p.lastIndex+p.count
	byBytes := p.countBytes > 0 && bytes-p.lastBytes >= p.countBytes
	if !byCount && !byBytes {
		return 0, false
	}
	if applied > p.catchUp {
		cut = applied - p.catchUp
	}
	if n := len(p.samples); p.catchUpByte > 0 && n >= 2 {
		// Cut at the oldest sample with at most catchUpByte after it, if
		// an older one has more; at the newest but one if all have more.
		older := p.samples[:n-1]
		i := 0
		for i < len(older) && bytes-older[i].bytes > p.catchUpByte {
			i++
		}
		if i == len(older) {
			cut = max(cut, older[i-1].index)
		} else if i > 0 {
			cut = max(cut, older[i].index)
		}
	}
	if cut <= p.lastCut {
		return 0, false
	}
	return cut, true
}

// truncated records a truncation at cut done when applied and bytes were
// the applied state.
func (p *truncatePolicy) truncated(cut, applied, bytes uint64) {
	p.lastIndex, p.lastBytes, p.lastCut = applied, bytes, cut
	i := 0
	for i < len(p.samples)-1 && p.samples[i].index <= cut {
		i++
	}
	p.samples = append(p.samples[:0], p.samples[i:]...)
}

// truncateLogLoop truncates the raft log as truncatePolicy says. The
// applied state is already in the engine, so nothing is copied: once the
// engine's WAL is synced, the log below the applied index is only kept
// for peers.
func (s *Server) truncateLogLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	p := newTruncatePolicy(&s.cfg)
	var idle idleFlush
	var droppedAt uint64 // applied bytes at the last DropTruncatedFiles
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			applied, bytes := s.applied.Load(), s.appliedBytes.Load()
			if idle.observe(s.engineWrites()) {
				s.flushIdle()
			}
			cut, due := p.observe(applied, bytes)
			if !due {
				continue
			}
			// Apply batches are not synced; make everything applied so far
			// durable before the log entries that could replay it go.
			if err := s.db.SyncWAL(); err != nil {
				s.lg.Fatal("syncing the engine's WAL failed", zap.Error(err))
			}
			if err := s.node.CompactLog(cut); err != nil {
				s.lg.Warn("raft log truncation failed", zap.Error(err))
				continue
			}
			p.truncated(cut, applied, bytes)
			if bytes-droppedAt >= dropFilesEveryBytes {
				// Deleting files writes (and syncs) the engine's manifest:
				// once some files' worth of log has gone, not per truncation.
				droppedAt = bytes
				if err := s.rstore.DropTruncatedFiles(); err != nil {
					s.lg.Warn("dropping the truncated raft log's files failed", zap.Error(err))
				}
			}
		}
	}
}

// dropFilesEveryBytes is how many bytes of applied entries pass between
// two deletions of the truncated raft log's files: four of the raft
// engine's 8 MiB files (raftEngineOptions).
const dropFilesEveryBytes = 32 << 20

// idleTicks is how many truncation ticks (seconds) without a write to
// either engine make a member idle.
const idleTicks = 10

// idleFlush tells when a member that wrote has gone idle: then its
// memtables are flushed, so the WALs that hold them (up to the engine's
// MaxTotalWALBytes, 256 MiB by default) are deleted and a restart has
// nothing to replay. Once per idle period.
type idleFlush struct {
	last    uint64 // engine writes at the last tick
	still   int    // ticks it has not moved
	flushed bool   // this idle period's flush is done
}

func (f *idleFlush) observe(writes uint64) bool {
	if writes != f.last {
		f.last, f.still, f.flushed = writes, 0, false
		return false
	}
	f.still++
	if f.still < idleTicks || f.flushed {
		return false
	}
	f.flushed = true
	return true
}

// engineWrites is a number that moves with every write to either engine:
// applied entries, raft log appends and background writes such as an
// mvcc compaction's deletions.
func (s *Server) engineWrites() uint64 {
	a, _ := s.db.LatestSequence()
	b, _ := s.raftDB.LatestSequence()
	return a + b
}

// flushIdle flushes both engines' memtables (see idleFlush) and hands the
// memory they held back to the operating system.
func (s *Server) flushIdle() {
	for _, db := range []*engine.DB{s.db, s.raftDB} {
		if err := db.Flush(); err != nil {
			s.lg.Warn("flushing an idle member's memtables failed", zap.String("engine", db.Dir()), zap.Error(err))
		}
	}
	debug.FreeOSMemory()
	engine.ReleaseFreeMemory()
}
