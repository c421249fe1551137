package tuning

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// MemtableColumnFamilies is the number of column families sized by
// WriteBufferBytes: the engine's kv, history, events and raft column
// families. Its small meta and lease families use a fixed 4 MiB memtable and
// are not counted.
const MemtableColumnFamilies = 4

// MemoryBudgetBytes is the memory the options let RocksDB hold: the block,
// row and compressed block caches plus, for each of the MemtableColumnFamilies data column families,
// MaxWriteBufferNumber memtables of WriteBufferBytes. Index and filter
// blocks are inside the cache when CacheIndexAndFilterBlocks is on (the
// default) and extra otherwise.
func (o Options) MemoryBudgetBytes() int64 {
	return o.BlockCacheBytes + o.RowCacheBytes + o.CompressedBlockCacheBytes + MemtableColumnFamilies*o.WriteBufferBytes*int64(o.MaxWriteBufferNumber)
}

// Default returns the options MetaStore runs with unless told otherwise;
// every field holds the default its comment states. It is the "default"
// preset and the starting point of every other preset and of Parse.
//
// Pick it for mixed workloads on a machine with a couple of GiB to spare.
//
// Memory budget: 1536 MiB (448 MiB block cache + 64 MiB row cache + 4 × 4 ×
// 64 MiB memtables).
func Default() Options {
	return Options{
		BlockCacheBytes:                448 << 20,
		RowCacheBytes:                  64 << 20,
		WriteBufferBytes:               64 << 20,
		MaxWriteBufferNumber:           4,
		MinWriteBufferNumberToMerge:    1,
		MaxBackgroundJobs:              4,
		MaxSubcompactions:              1,
		BlockSizeBytes:                 16 << 10,
		BloomBitsPerKey:                10,
		CacheIndexAndFilterBlocks:      true,
		PinL0FilterAndIndexBlocks:      true,
		Level0FileNumCompactionTrigger: 4,
		Level0SlowdownWritesTrigger:    20,
		Level0StopWritesTrigger:        36,
		TargetFileSizeBaseBytes:        64 << 20,
		MaxBytesForLevelBaseBytes:      256 << 20,
		DynamicLevelBytes:              true,
		Compression:                    CompressionLZ4,
		BottommostCompression:          CompressionLZ4,
		UncompressedLevels:             1,
		MaxOpenFiles:                   -1,
		BytesPerSync:                   1 << 20,
		WALBytesPerSync:                0,
		MaxTotalWALBytes:               256 << 20,
		PipelinedWrite:                 true,
		LowPriorityCompactions:         false,
		ManualWALFlush:                 true,
		BlobFiles:                      false,
		MinBlobBytes:                   4 << 10,
		RateLimitBytesPerSec:           0,
		WALRecovery:                    WALRecoveryTolerateTail,
		Statistics:                     true,
	}
}

// WriteHeavy is for ingest-bound workloads: high put, delete and txn rates
// or lease churn. Six 128 MiB memtables per column family absorb bursts and
// flush two at a time, so L0 gets fewer, larger files; higher L0 triggers
// (8/40/60) and eight background jobs let compaction catch up before writes
// stall; pipelined writes overlap WAL appends and memtable inserts. The block
// cache shrinks to 256 MiB to pay for part of the memtables.
//
// Pick it when write stalls or flush backlog dominate and reads mostly hit
// recently written keys.
//
// Memory budget: 3328 MiB (192 MiB block cache + 64 MiB row cache + 4 × 6 ×
// 128 MiB memtables).
func WriteHeavy() Options {
	o := Default()
	o.WriteBufferBytes = 128 << 20
	o.MaxWriteBufferNumber = 6
	o.MinWriteBufferNumberToMerge = 2
	o.MaxBackgroundJobs = 8
	o.Level0FileNumCompactionTrigger = 8
	o.Level0SlowdownWritesTrigger = 40
	o.Level0StopWritesTrigger = 60
	o.BlockCacheBytes = 192 << 20 // + the 64 MiB row cache
	o.PipelinedWrite = true
	return o
}

// ReadHeavy is for range reads and point gets that far outnumber writes. A
// 2 GiB block cache holds the working set, 14 bloom bits per key cut false
// positives to about 0.2%, and 8 KiB blocks read less per point lookup at the
// cost of a larger index. Memtables shrink to 32 MiB to give the memory to
// the cache.
//
// Pick it when the block cache hit rate is low or get latency is dominated by
// disk reads, and the working set fits in a few GiB.
//
// Memory budget: 2560 MiB (1984 MiB block cache + 64 MiB row cache + 4 × 4 ×
// 32 MiB memtables).
func ReadHeavy() Options {
	o := Default()
	o.BlockCacheBytes = 2<<30 - o.RowCacheBytes
	o.BloomBitsPerKey = 14
	o.BlockSizeBytes = 8 << 10
	o.WriteBufferBytes = 32 << 20
	return o
}

// LargeVolume is for data sets far larger than memory, where disk space and
// compaction write amplification matter more than CPU. Every compressed level
// uses zstd (only L0 stays uncompressed), 128 MiB files and a 512 MiB L1 mean
// fewer files and levels, and values of 4 KiB or more go to blob files so
// compactions stop rewriting them. A 1 GiB cache keeps index and filter
// blocks of the larger tree resident.
//
// Pick it for stores of tens of GiB or more, or with large values.
//
// No row cache: over a key space far larger than it, almost every get
// misses it and pays for the lookup and the insert of its result (at 5M
// keys 13.9 µs a get without it, 17.2 µs with it: BenchmarkGetAtScale).
//
// Memory budget: 2048 MiB (1024 MiB block cache + 4 × 4 × 64 MiB
// memtables).
func LargeVolume() Options {
	o := Default()
	o.UncompressedLevels = 1
	o.Compression = CompressionZSTD
	o.BottommostCompression = CompressionZSTD
	o.TargetFileSizeBaseBytes = 128 << 20
	o.MaxBytesForLevelBaseBytes = 512 << 20
	o.BlobFiles = true
	o.MinBlobBytes = 4 << 10
	o.RowCacheBytes = 0
	o.BlockCacheBytes = 1 << 30
	return o
}

// LowMemory is for small deployments: development, CI, edge nodes and
// containers with a few hundred MiB. A 32 MiB cache, two 8 MiB memtables per
// column family, 4 KiB blocks and two background jobs keep memory and CPU
// small at the cost of throughput and more frequent flushes.
//
// Pick it when the process must stay well under 256 MiB resident.
//
// Memory budget: 96 MiB (32 MiB block cache, no row cache, 4 × 2 × 8 MiB
// memtables).
func LowMemory() Options {
	o := Default()
	o.BlockCacheBytes = 32 << 20
	o.RowCacheBytes = 0
	o.WriteBufferBytes = 8 << 20
	o.MaxWriteBufferNumber = 2
	o.MaxBackgroundJobs = 2
	o.BlockSizeBytes = 4 << 10
	return o
}

// presets maps each preset name to its constructor.
var presets = map[string]func() Options{
	"default":      Default,
	"write-heavy":  WriteHeavy,
	"read-heavy":   ReadHeavy,
	"large-volume": LargeVolume,
	"low-memory":   LowMemory,
}

// Preset returns the named preset. An unknown name gives an error listing
// the valid ones.
func Preset(name string) (Options, error) {
	p, ok := presets[name]
	if !ok {
		return Options{}, fmt.Errorf("unknown preset %q (valid: %s)", name, strings.Join(PresetNames(), ", "))
	}
	return p(), nil
}

// PresetNames returns the preset names, sorted.
func PresetNames() []string {
	return slices.Sorted(maps.Keys(presets))
}
