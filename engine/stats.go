package engine

import (
	"bufio"
	"strconv"
	"strings"
)

// Stats are the engine's gauges and counters, summed over column families.
// Counters from RocksDB's statistics are zero when tuning.Options.Statistics
// is off.
type Stats struct {
	// LiveSSTBytes is the size of the SST files the current version uses.
	LiveSSTBytes uint64
	// TotalSSTBytes also counts files kept only for open iterators,
	// snapshots or checkpoints in progress.
	TotalSSTBytes uint64
	// BlobBytes is the size of live blob files (key-value separation).
	BlobBytes uint64
	// EstimatedLiveDataBytes is RocksDB's estimate of the live data, without
	// the space taken by overwritten and deleted entries.
	EstimatedLiveDataBytes uint64
	// MemtableBytes is the memory held by all memtables.
	MemtableBytes uint64
	// PendingCompactionBytes estimates the bytes compactions must rewrite to
	// bring every level under its target size.
	PendingCompactionBytes uint64
	// L0Files is the number of files in level 0.
	L0Files uint64
	// BlockCacheUsageBytes and BlockCacheCapacityBytes describe the shared
	// block cache.
	BlockCacheUsageBytes, BlockCacheCapacityBytes uint64
	// CompressedBlockCacheUsageBytes is what the compressed block cache
	// holds (0 without one).
	CompressedBlockCacheUsageBytes uint64
	// BlockCacheHits and BlockCacheMisses count block cache lookups.
	BlockCacheHits, BlockCacheMisses uint64
	// StallMicros is the time writes spent stalled by RocksDB.
	StallMicros uint64
	// CompactReadBytes and CompactWriteBytes count compaction I/O.
	CompactReadBytes, CompactWriteBytes uint64
}

// BlockCacheHitRate returns hits/(hits+misses), or 0 before any lookup.
func (s Stats) BlockCacheHitRate() float64 {
	if n := s.BlockCacheHits + s.BlockCacheMisses; n > 0 {
		return float64(s.BlockCacheHits) / float64(n)
	}
	return 0
}

// Stats reads the engine's gauges and counters.
func (d *DB) Stats() (Stats, error) {
	if err := d.acquire(); err != nil {
		return Stats{}, err
	}
	defer d.release()
	var s Stats
	for cf := CF(0); cf < NumCFs; cf++ {
		h := d.cfs[cf]
		prop := func(name string) uint64 {
			v, _ := d.db.GetIntPropertyCF(name, h)
			return v
		}
		s.LiveSSTBytes += prop("rocksdb.live-sst-files-size")
		s.TotalSSTBytes += prop("rocksdb.total-sst-files-size")
		s.BlobBytes += prop("rocksdb.live-blob-file-size")
		s.EstimatedLiveDataBytes += prop("rocksdb.estimate-live-data-size")
		s.MemtableBytes += prop("rocksdb.cur-size-all-mem-tables")
		s.PendingCompactionBytes += prop("rocksdb.estimate-pending-compaction-bytes")
		s.L0Files += prop("rocksdb.num-files-at-level0")
	}
	s.BlockCacheUsageBytes = d.cache.GetUsage()
	s.BlockCacheCapacityBytes = d.cache.GetCapacity()
	if d.zCache != nil {
		s.CompressedBlockCacheUsageBytes = d.zCache.GetUsage()
	}
	if d.opts.Statistics {
		t := parseTickers(d.dbOpts.GetStatisticsString())
		s.BlockCacheHits = t["rocksdb.block.cache.hit"]
		s.BlockCacheMisses = t["rocksdb.block.cache.miss"]
		s.StallMicros = t["rocksdb.stall.micros"]
		s.CompactReadBytes = t["rocksdb.compact.read.bytes"]
		s.CompactWriteBytes = t["rocksdb.compact.write.bytes"]
	}
	return s, nil
}

// parseTickers reads the "name COUNT : n" lines of RocksDB's statistics
// dump; histogram lines are skipped.
func parseTickers(dump string) map[string]uint64 {
	out := make(map[string]uint64, 256)
	sc := bufio.NewScanner(strings.NewReader(dump))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), " COUNT : ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 64); err == nil {
			out[name] = n
		}
	}
	return out
}
