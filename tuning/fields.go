package tuning

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// field describes one Options field. The fields table is the one source of
// truth for String, Parse, Set and Validate.
type field struct {
	key  string // options-file key: the Go name in kebab-case
	doc  string // first sentence of the field's doc comment
	size bool   // a byte count, printed and parsed with unit suffixes
	// ptr returns the field's address: *int64, *int, *float64, *bool,
	// *Compression or *WALRecovery.
	ptr func(*Options) any
	// check returns what is wrong with the field's value, or "". Nil means
	// every value is valid.
	check func(*Options) string
}

// fields lists every Options field in declaration order.
var fields = []field{
	{
		key: "block-cache-bytes", size: true,
		doc:   "BlockCacheBytes is the capacity of the one LRU block cache shared by every column family (data, index and filter blocks).",
		ptr:   func(o *Options) any { return &o.BlockCacheBytes },
		check: func(o *Options) string { return positive(o.BlockCacheBytes) },
	},
	{
		key: "row-cache-bytes", size: true,
		doc:   "RowCacheBytes is the capacity of RocksDB's row cache: whole key-value results of point lookups in SST files, so a repeated get of a flushed key skips the index and data block search (3.3 µs instead of 5.2 µs a get in BenchmarkGetLatestFlushed, docs/PERFORMANCE.md).",
		ptr:   func(o *Options) any { return &o.RowCacheBytes },
		check: func(o *Options) string { return nonNegative(o.RowCacheBytes) },
	},
	{
		key: "compressed-block-cache-bytes", size: true,
		doc:   "CompressedBlockCacheBytes is the capacity of a second LRU cache that holds data blocks as they are on disk (compressed), so a block the block cache evicted is decompressed from memory instead of read from the file: when the key space outgrows the block cache, it keeps a compressed copy of several times more data in the same memory, and does not depend on the OS page cache holding the SST files.",
		ptr:   func(o *Options) any { return &o.CompressedBlockCacheBytes },
		check: func(o *Options) string { return nonNegative(o.CompressedBlockCacheBytes) },
	},
	{
		key: "write-buffer-bytes", size: true,
		doc:   "WriteBufferBytes is the size of one memtable of a data column family.",
		ptr:   func(o *Options) any { return &o.WriteBufferBytes },
		check: func(o *Options) string { return positive(o.WriteBufferBytes) },
	},
	{
		key:   "max-write-buffer-number",
		doc:   "MaxWriteBufferNumber is how many memtables a column family may hold (one active, the rest waiting to flush).",
		ptr:   func(o *Options) any { return &o.MaxWriteBufferNumber },
		check: func(o *Options) string { return positive(o.MaxWriteBufferNumber) },
	},
	{
		key: "min-write-buffer-number-to-merge",
		doc: "MinWriteBufferNumberToMerge is how many immutable memtables are merged into one flush.",
		ptr: func(o *Options) any { return &o.MinWriteBufferNumberToMerge },
		check: func(o *Options) string {
			if o.MinWriteBufferNumberToMerge < 1 || o.MinWriteBufferNumberToMerge >= o.MaxWriteBufferNumber {
				return fmt.Sprintf("must be at least 1 and less than max-write-buffer-number (%d)", o.MaxWriteBufferNumber)
			}
			return ""
		},
	},
	{
		key:   "max-background-jobs",
		doc:   "MaxBackgroundJobs bounds concurrent flushes and compactions.",
		ptr:   func(o *Options) any { return &o.MaxBackgroundJobs },
		check: func(o *Options) string { return positive(o.MaxBackgroundJobs) },
	},
	{
		key:   "max-subcompactions",
		doc:   "MaxSubcompactions splits one compaction into this many threads.",
		ptr:   func(o *Options) any { return &o.MaxSubcompactions },
		check: func(o *Options) string { return positive(o.MaxSubcompactions) },
	},
	{
		key: "block-size-bytes", size: true,
		doc: "BlockSizeBytes is the uncompressed size of a data block.",
		ptr: func(o *Options) any { return &o.BlockSizeBytes },
		check: func(o *Options) string {
			if o.BlockSizeBytes < 1<<10 || o.BlockSizeBytes > 4<<20 {
				return "must be between 1 KiB and 4 MiB"
			}
			return ""
		},
	},
	{
		key: "bloom-bits-per-key",
		doc: "BloomBitsPerKey sizes the full-key bloom filters of the point-lookup column families; 0 disables them.",
		ptr: func(o *Options) any { return &o.BloomBitsPerKey },
		check: func(o *Options) string {
			if !(o.BloomBitsPerKey >= 0 && o.BloomBitsPerKey <= 64) { // also rejects NaN
				return "must be between 0 and 64"
			}
			return ""
		},
	},
	{
		key: "cache-index-and-filter-blocks",
		doc: "CacheIndexAndFilterBlocks charges index and filter blocks to the block cache, so the cache capacity bounds them too.",
		ptr: func(o *Options) any { return &o.CacheIndexAndFilterBlocks },
	},
	{
		key: "pin-l0-filter-and-index-blocks",
		doc: "PinL0FilterAndIndexBlocks keeps L0's index and filter blocks pinned in the cache.",
		ptr: func(o *Options) any { return &o.PinL0FilterAndIndexBlocks },
	},
	{
		key:   "level0-file-num-compaction-trigger",
		doc:   "Level0FileNumCompactionTrigger starts an L0 compaction at this many files.",
		ptr:   func(o *Options) any { return &o.Level0FileNumCompactionTrigger },
		check: func(o *Options) string { return positive(o.Level0FileNumCompactionTrigger) },
	},
	{
		key: "level0-slowdown-writes-trigger",
		doc: "Level0SlowdownWritesTrigger slows writes at this many L0 files.",
		ptr: func(o *Options) any { return &o.Level0SlowdownWritesTrigger },
		check: func(o *Options) string {
			if o.Level0SlowdownWritesTrigger < o.Level0FileNumCompactionTrigger {
				return fmt.Sprintf("must be at least level0-file-num-compaction-trigger (%d)", o.Level0FileNumCompactionTrigger)
			}
			return ""
		},
	},
	{
		key: "level0-stop-writes-trigger",
		doc: "Level0StopWritesTrigger stops writes at this many L0 files.",
		ptr: func(o *Options) any { return &o.Level0StopWritesTrigger },
		check: func(o *Options) string {
			if o.Level0StopWritesTrigger < o.Level0SlowdownWritesTrigger {
				return fmt.Sprintf("must be at least level0-slowdown-writes-trigger (%d)", o.Level0SlowdownWritesTrigger)
			}
			return ""
		},
	},
	{
		key: "target-file-size-base-bytes", size: true,
		doc:   "TargetFileSizeBaseBytes is the SST file size at L1.",
		ptr:   func(o *Options) any { return &o.TargetFileSizeBaseBytes },
		check: func(o *Options) string { return positive(o.TargetFileSizeBaseBytes) },
	},
	{
		key: "max-bytes-for-level-base-bytes", size: true,
		doc:   "MaxBytesForLevelBaseBytes is L1's size; each level below is 10x.",
		ptr:   func(o *Options) any { return &o.MaxBytesForLevelBaseBytes },
		check: func(o *Options) string { return positive(o.MaxBytesForLevelBaseBytes) },
	},
	{
		key: "dynamic-level-bytes",
		doc: "DynamicLevelBytes lets RocksDB size levels from the bottom up, which bounds space amplification to about 1.1x.",
		ptr: func(o *Options) any { return &o.DynamicLevelBytes },
	},
	{
		key:   "compression",
		doc:   "Compression is used on every level above the bottommost, except the first UncompressedLevels.",
		ptr:   func(o *Options) any { return &o.Compression },
		check: func(o *Options) string { return oneOf(o.Compression, compressions) },
	},
	{
		key:   "bottommost-compression",
		doc:   "BottommostCompression is used on the bottommost level, which holds most of the data.",
		ptr:   func(o *Options) any { return &o.BottommostCompression },
		check: func(o *Options) string { return oneOf(o.BottommostCompression, compressions) },
	},
	{
		key:   "uncompressed-levels",
		doc:   "UncompressedLevels leaves the first levels (L0, L1, ...) uncompressed, since their data is rewritten soon.",
		ptr:   func(o *Options) any { return &o.UncompressedLevels },
		check: func(o *Options) string { return nonNegative(o.UncompressedLevels) },
	},
	{
		key: "max-open-files",
		doc: "MaxOpenFiles bounds open SST files; -1 keeps all open.",
		ptr: func(o *Options) any { return &o.MaxOpenFiles },
		check: func(o *Options) string {
			if o.MaxOpenFiles != -1 && o.MaxOpenFiles < 16 {
				return "must be -1 or at least 16"
			}
			return ""
		},
	},
	{
		key: "bytes-per-sync", size: true,
		doc:   "BytesPerSync asks the OS to write back SST data every this many bytes, smoothing I/O.",
		ptr:   func(o *Options) any { return &o.BytesPerSync },
		check: func(o *Options) string { return nonNegative(o.BytesPerSync) },
	},
	{
		key: "wal-bytes-per-sync", size: true,
		doc:   "WALBytesPerSync does the same for the WAL.",
		ptr:   func(o *Options) any { return &o.WALBytesPerSync },
		check: func(o *Options) string { return nonNegative(o.WALBytesPerSync) },
	},
	{
		key: "max-total-wal-bytes", size: true,
		doc:   "MaxTotalWALBytes forces flushes once the WALs exceed this size, so recovery stays short and disk use bounded: a WAL file is deleted only when every column family's data in it is flushed, and a family written a few bytes at a time (the applied index in meta) would otherwise keep every WAL until RocksDB's own bound (with 0 here: 4x the memtables, 4 GiB with the default preset).",
		ptr:   func(o *Options) any { return &o.MaxTotalWALBytes },
		check: func(o *Options) string { return nonNegative(o.MaxTotalWALBytes) },
	},
	{
		key: "pipelined-write",
		doc: "PipelinedWrite lets WAL writes and memtable inserts of different batches overlap.",
		ptr: func(o *Options) any { return &o.PipelinedWrite },
	},
	{
		key: "low-priority-compactions",
		doc: "LowPriorityCompactions runs RocksDB's compaction threads at the lowest CPU priority (nice 19), so that on a busy core they take the CPU the requests leave, and a burst of compaction work (the deletes of a large revision compaction) does not raise request latency; flushes keep normal priority.",
		ptr: func(o *Options) any { return &o.LowPriorityCompactions },
	},
	{
		key: "manual-wal-flush",
		doc: "ManualWALFlush keeps unsynced writes' WAL records in RocksDB's WAL buffer (bounded by its 1 MiB writable-file buffer) instead of making a write(2) per batch; they reach the file on the next synced write, SyncWAL, flush or a full buffer.",
		ptr: func(o *Options) any { return &o.ManualWALFlush },
	},
	{
		key: "blob-files",
		doc: "BlobFiles separates values of at least MinBlobBytes into blob files, so compactions rewrite keys but not large values.",
		ptr: func(o *Options) any { return &o.BlobFiles },
	},
	{
		key: "min-blob-bytes", size: true,
		doc:   "MinBlobBytes is the smallest value stored in a blob file when BlobFiles is on.",
		ptr:   func(o *Options) any { return &o.MinBlobBytes },
		check: func(o *Options) string { return nonNegative(o.MinBlobBytes) },
	},
	{
		key: "rate-limit-bytes-per-sec", size: true,
		doc:   "RateLimitBytesPerSec caps flush and compaction writes; 0 is no limit.",
		ptr:   func(o *Options) any { return &o.RateLimitBytesPerSec },
		check: func(o *Options) string { return nonNegative(o.RateLimitBytesPerSec) },
	},
	{
		key:   "wal-recovery",
		doc:   "WALRecovery is the WAL recovery mode.",
		ptr:   func(o *Options) any { return &o.WALRecovery },
		check: func(o *Options) string { return oneOf(o.WALRecovery, walRecoveries) },
	},
	{
		key: "statistics",
		doc: "Statistics turns on RocksDB's statistics (block cache hit rate, stall time, compaction bytes).",
		ptr: func(o *Options) any { return &o.Statistics },
	},
}

var (
	compressions  = []Compression{CompressionNone, CompressionSnappy, CompressionLZ4, CompressionZSTD}
	walRecoveries = []WALRecovery{WALRecoveryTolerateTail, WALRecoveryAbsolute, WALRecoveryPointInTime}
)

// lookup returns the field with the given key, or nil.
func lookup(key string) *field {
	for i := range fields {
		if fields[i].key == key {
			return &fields[i]
		}
	}
	return nil
}

// Validate reports every invalid field at once, each as "key = value:
// problem", joined with errors.Join. It returns nil if o is valid.
func (o Options) Validate() error {
	return o.validate(nil)
}

// validate is Validate; an error about a key in lines is prefixed with that
// key's line number.
func (o *Options) validate(lines map[string]int) error {
	var errs []error
	for i := range fields {
		f := &fields[i]
		if f.check == nil {
			continue
		}
		if msg := f.check(o); msg != "" {
			err := fmt.Errorf("%s = %s: %s", f.key, f.format(o), msg)
			if n, ok := lines[f.key]; ok {
				err = fmt.Errorf("line %d: %w", n, err)
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func positive[T int | int64](v T) string {
	if v <= 0 {
		return "must be positive"
	}
	return ""
}

func nonNegative[T int | int64](v T) string {
	if v < 0 {
		return "must not be negative"
	}
	return ""
}

func oneOf[T ~string](v T, valid []T) string {
	if slices.Contains(valid, v) {
		return ""
	}
	names := make([]string, len(valid))
	for i, s := range valid {
		names[i] = string(s)
	}
	return "must be one of " + strings.Join(names, ", ")
}

// format returns the field's value in o as the options file writes it.
func (f *field) format(o *Options) string {
	switch p := f.ptr(o).(type) {
	case *int64:
		return formatInt(*p, f.size)
	case *int:
		return formatInt(int64(*p), f.size)
	case *float64:
		return strconv.FormatFloat(*p, 'g', -1, 64)
	case *bool:
		return strconv.FormatBool(*p)
	case *Compression:
		return string(*p)
	case *WALRecovery:
		return string(*p)
	}
	panic("tuning: unsupported type of field " + f.key)
}

// set parses s, as the options file writes it, into the field of o. It
// leaves o unchanged on error.
func (f *field) set(o *Options, s string) error {
	s = strings.TrimSpace(s)
	bad := func(want string) error { return fmt.Errorf("invalid value %q: want %s", s, want) }
	switch p := f.ptr(o).(type) {
	case *int64:
		n, ok := parseInt(s, f.size)
		if !ok {
			return bad(f.intWant())
		}
		*p = n
	case *int:
		n, ok := parseInt(s, f.size)
		if !ok || int64(int(n)) != n {
			return bad(f.intWant())
		}
		*p = int(n)
	case *float64:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bad("a number")
		}
		*p = v
	case *bool:
		if s != "true" && s != "false" {
			return bad("true or false")
		}
		*p = s == "true"
	case *Compression:
		if msg := oneOf(Compression(s), compressions); msg != "" {
			return fmt.Errorf("invalid value %q: %s", s, msg)
		}
		*p = Compression(s)
	case *WALRecovery:
		if msg := oneOf(WALRecovery(s), walRecoveries); msg != "" {
			return fmt.Errorf("invalid value %q: %s", s, msg)
		}
		*p = WALRecovery(s)
	default:
		panic("tuning: unsupported type of field " + f.key)
	}
	return nil
}

func (f *field) intWant() string {
	if f.size {
		return "a byte count such as 65536, 64 MiB or 64MB"
	}
	return "an integer"
}

// units are the size suffixes Parse accepts; String writes the binary ones.
var units = []struct {
	name string
	n    int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
}

// formatInt formats n, as a multiple of the largest binary unit that
// divides it if size is set.
func formatInt(n int64, size bool) string {
	if size && n != 0 {
		for _, u := range units[:4] {
			if n%u.n == 0 {
				return fmt.Sprintf("%d %s", n/u.n, u.name)
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// parseInt parses a decimal integer followed, if size is set, by an optional
// unit suffix. It reports false on bad syntax or overflow.
func parseInt(s string, size bool) (int64, bool) {
	num, unit := s, ""
	if size {
		if i := strings.IndexFunc(s, func(r rune) bool { return !strings.ContainsRune("+-0123456789", r) }); i >= 0 {
			num, unit = s[:i], strings.TrimSpace(s[i:])
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, false
	}
	if unit == "" {
		return n, true
	}
	for _, u := range units {
		if u.name == unit {
			if n > math.MaxInt64/u.n || n < math.MinInt64/u.n {
				return 0, false
			}
			return n * u.n, true
		}
	}
	return 0, false
}
