// Package tuning holds MetaStore's RocksDB option presets.
//
// An Options value describes every RocksDB knob MetaStore exposes to an
// operator. Presets are named constructors (Preset) that state their intent
// and memory budget; an operator can dump one with String, edit the text,
// and load it back with Parse. Individual overrides go on top of a preset
// with Set. Defaults are filled in one place (Default) and Validate reports
// every violation at once.
//
// tuning imports nothing from MetaStore; engine consumes it.
package tuning

// Compression names a block compression algorithm. The values are the words
// an options file uses.
type Compression string

// The compression algorithms MetaStore's RocksDB build supports.
const (
	CompressionNone   Compression = "none"
	CompressionSnappy Compression = "snappy"
	CompressionLZ4    Compression = "lz4"
	CompressionZSTD   Compression = "zstd"
)

// WALRecovery names RocksDB's WAL recovery mode.
type WALRecovery string

// The WAL recovery modes. MetaStore's default is WALRecoveryTolerateTail: a
// torn tail left by a crash is dropped (those writes were never acknowledged
// because a synced write returns only after the whole record is on disk),
// while a damaged record in the middle of the WAL stops the open with an
// error instead of silently truncating acknowledged history, which is what
// point-in-time recovery would do.
const (
	WALRecoveryTolerateTail WALRecovery = "tolerate-corrupted-tail"
	WALRecoveryAbsolute     WALRecovery = "absolute-consistency"
	WALRecoveryPointInTime  WALRecovery = "point-in-time"
)

// Options are the RocksDB settings of one MetaStore engine. Each field's
// comment gives the default that Default fills in. Sizes are in bytes.
type Options struct {
	// BlockCacheBytes is the capacity of the one LRU block cache shared by
	// every column family (data, index and filter blocks). Default 448 MiB
	// (with the row cache, 512 MiB of caches).
	BlockCacheBytes int64
	// RowCacheBytes is the capacity of RocksDB's row cache: whole key-value
	// results of point lookups in SST files, so a repeated get of a flushed
	// key skips the index and data block search (3.3 µs instead of 5.2 µs a
	// get in BenchmarkGetLatestFlushed, docs/PERFORMANCE.md). 0 turns it
	// off. Default 64 MiB. A get that misses it pays for the lookup and
	// for inserting its result: over 5M random keys it made a get 13.9 ->
	// 17.2 µs (BenchmarkGetAtScale), so large-volume has none.
	RowCacheBytes int64
	// CompressedBlockCacheBytes is the capacity of a second LRU cache that
	// holds data blocks as they are on disk (compressed), so a block the
	// block cache evicted is decompressed from memory instead of read from
	// the file: when the key space outgrows the block cache, it keeps a
	// compressed copy of several times more data in the same memory, and
	// does not depend on the OS page cache holding the SST files. 0 turns
	// it off. Default 0.
	CompressedBlockCacheBytes int64
	// WriteBufferBytes is the size of one memtable of a data column family.
	// Default 64 MiB.
	WriteBufferBytes int64
	// MaxWriteBufferNumber is how many memtables a column family may hold
	// (one active, the rest waiting to flush). Default 4.
	MaxWriteBufferNumber int
	// MinWriteBufferNumberToMerge is how many immutable memtables are merged
	// into one flush. Default 1.
	MinWriteBufferNumberToMerge int
	// MaxBackgroundJobs bounds concurrent flushes and compactions. Default 4.
	MaxBackgroundJobs int
	// MaxSubcompactions splits one compaction into this many threads.
	// Default 1.
	MaxSubcompactions int
	// BlockSizeBytes is the uncompressed size of a data block. Default 16 KiB.
	BlockSizeBytes int
	// BloomBitsPerKey sizes the full-key bloom filters of the point-lookup
	// column families; 0 disables them. Default 10 (about 1% false positives).
	BloomBitsPerKey float64
	// CacheIndexAndFilterBlocks charges index and filter blocks to the block
	// cache, so the cache capacity bounds them too. Default true.
	CacheIndexAndFilterBlocks bool
	// PinL0FilterAndIndexBlocks keeps L0's index and filter blocks pinned in
	// the cache. Default true.
	PinL0FilterAndIndexBlocks bool
	// Level0FileNumCompactionTrigger starts an L0 compaction at this many
	// files. Default 4.
	Level0FileNumCompactionTrigger int
	// Level0SlowdownWritesTrigger slows writes at this many L0 files.
	// Default 20.
	Level0SlowdownWritesTrigger int
	// Level0StopWritesTrigger stops writes at this many L0 files. Default 36.
	Level0StopWritesTrigger int
	// TargetFileSizeBaseBytes is the SST file size at L1. Default 64 MiB.
	TargetFileSizeBaseBytes int64
	// MaxBytesForLevelBaseBytes is L1's size; each level below is 10x.
	// Default 256 MiB.
	MaxBytesForLevelBaseBytes int64
	// DynamicLevelBytes lets RocksDB size levels from the bottom up, which
	// bounds space amplification to about 1.1x. Default true.
	DynamicLevelBytes bool
	// Compression is used on every level above the bottommost, except the
	// first UncompressedLevels. Default lz4.
	Compression Compression
	// BottommostCompression is used on the bottommost level, which holds
	// most of the data. Default lz4. A get that misses the block cache
	// decompresses a block, and zstd made that 10% of a get at 5M keys
	// (docs/PERFORMANCE.md); large-volume trades it for zstd's smaller
	// files.
	BottommostCompression Compression
	// UncompressedLevels leaves the first levels (L0, L1, ...) uncompressed,
	// since their data is rewritten soon. Default 1 (L0 only).
	UncompressedLevels int
	// MaxOpenFiles bounds open SST files; -1 keeps all open. Default -1.
	MaxOpenFiles int
	// BytesPerSync asks the OS to write back SST data every this many bytes,
	// smoothing I/O. Default 1 MiB.
	BytesPerSync int64
	// WALBytesPerSync does the same for the WAL. Default 0 (off: MetaStore
	// syncs the WAL itself on every durable write).
	WALBytesPerSync int64
	// MaxTotalWALBytes forces flushes once the WALs exceed this size, so
	// recovery stays short and disk use bounded: a WAL file is deleted
	// only when every column family's data in it is flushed, and a family
	// written a few bytes at a time (the applied index in meta) would
	// otherwise keep every WAL until RocksDB's own bound (with 0 here: 4x
	// the memtables, 4 GiB with the default preset). Default 256 MiB.
	MaxTotalWALBytes int64
	// PipelinedWrite lets WAL writes and memtable inserts of different
	// batches overlap. Default true.
	PipelinedWrite bool
	// LowPriorityCompactions runs RocksDB's compaction threads at the
	// lowest CPU priority (nice 19), so that on a busy core they take the
	// CPU the requests leave, and a burst of compaction work (the deletes
	// of a large revision compaction) does not raise request latency;
	// flushes keep normal priority. Compaction that falls behind slows
	// writes through the L0 triggers, as it would anyway. Process-wide:
	// RocksDB's thread pools are shared by every engine of the process,
	// and a pool once lowered stays low. On the compaction row of
	// docs/PERFORMANCE.md it changed nothing measurable (put p99 during a
	// 1M-revision compaction +35% with it, +42% without, one run each),
	// and a sustained write load on a saturated core would starve
	// compaction into L0 write stalls. Default false.
	LowPriorityCompactions bool
	// ManualWALFlush keeps unsynced writes' WAL records in RocksDB's WAL
	// buffer (bounded by its 1 MiB writable-file buffer) instead of making a
	// write(2) per batch; they reach the file on the next synced write,
	// SyncWAL, flush or a full buffer. A process crash then loses the
	// unsynced tail, which is safe only where something else replays it:
	// MetaStore's data engine, whose every write is replayable from the
	// raft log above its persisted applied index (the raft log's own engine
	// turns it off). Default true.
	ManualWALFlush bool
	// BlobFiles separates values of at least MinBlobBytes into blob files,
	// so compactions rewrite keys but not large values. Default false.
	BlobFiles bool
	// MinBlobBytes is the smallest value stored in a blob file when
	// BlobFiles is on. Default 4 KiB.
	MinBlobBytes int64
	// RateLimitBytesPerSec caps flush and compaction writes; 0 is no limit.
	// Default 0.
	RateLimitBytesPerSec int64
	// WALRecovery is the WAL recovery mode. Default tolerate-corrupted-tail.
	WALRecovery WALRecovery
	// Statistics turns on RocksDB's statistics (block cache hit rate, stall
	// time, compaction bytes). Costs a few percent of CPU. Default true.
	Statistics bool
}
