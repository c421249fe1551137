package engine

// #include "rocksdb/c.h"
import "C"

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/linxGnu/grocksdb"

	"github.com/metastore/metastore/tuning"
)

// CF names a column family of MetaStore's layout.
type CF uint8

// The column families. Their order is part of nothing on disk: RocksDB keeps
// them by name.
const (
	CFKV CF = iota
	CFHistory
	CFEvents
	CFRaft
	CFMeta
	CFLease
	// NumCFs is the number of column families.
	NumCFs

	// cfDefault stands for RocksDB's "default" family, which MetaStore
	// leaves empty; its options double as the database-wide options.
	cfDefault CF = 255
)

var cfNames = [NumCFs]string{"kv", "history", "events", "raft", "meta", "lease"}

// String returns the column family's name as RocksDB stores it.
func (cf CF) String() string {
	if cf < NumCFs {
		return cfNames[cf]
	}
	return fmt.Sprintf("cf(%d)", uint8(cf))
}

// memtableBloomRatio is the size of CFKV's memtable bloom filter as a
// fraction of its memtable: 2% of a 64 MiB memtable is 1.3 MiB, about 48
// bits per key at ~300-byte entries, 8 at ~50-byte ones.
const memtableBloomRatio = 0.02

// smallMemtableBytes is the memtable size of the meta and lease column
// families, which hold little data (tuning.MemtableColumnFamilies excludes
// them from the budget).
const smallMemtableBytes = 4 << 20

// Errors returned by the engine.
var (
	// ErrClosed is returned by every call on a closed DB.
	ErrClosed = errors.New("engine: database is closed")
	// ErrOpenHandles is returned by Close while iterators or snapshots are open.
	ErrOpenHandles = errors.New("engine: iterators or snapshots still open")
)

// DB is an open MetaStore engine.
type DB struct {
	dir  string
	opts tuning.Options

	// closeMu is read-held by every call that touches RocksDB and
	// write-held by Close, so no call runs on a freed handle.
	closeMu sync.RWMutex
	closed  bool

	db        *grocksdb.DB
	dbOpts    *grocksdb.Options
	cfOpts    []*grocksdb.Options
	bbtos     []*grocksdb.BlockBasedTableOptions
	cache     *grocksdb.Cache
	rowCache  *grocksdb.Cache                // nil when tuning.Options.RowCacheBytes is 0
	zCache    *grocksdb.Cache                // compressed blocks; nil when tuning.Options.CompressedBlockCacheBytes is 0
	handles   []*grocksdb.ColumnFamilyHandle // index 0 is "default"
	cfs       [NumCFs]*grocksdb.ColumnFamilyHandle
	cfIDs     [NumCFs]uint32 // RocksDB's numeric ids, used by Batch's encoding
	readOpts  *grocksdb.ReadOptions
	syncWO    *grocksdb.WriteOptions
	noSyncWO  *grocksdb.WriteOptions
	openIters atomic.Int64 // iterators and snapshots not yet closed
	// c holds the C pointers behind db, cfs, readOpts and the write
	// options, for the hot paths that skip grocksdb (native.go).
	c native
}

// Open opens (creating if needed) the engine in dir with the given options,
// which must pass Validate.
func Open(dir string, o tuning.Options) (*DB, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("engine: invalid options: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	d := &DB{dir: dir, opts: o}
	ok := false
	defer func() {
		if !ok {
			d.freeOptions()
		}
	}()

	d.cache = grocksdb.NewLRUCache(uint64(o.BlockCacheBytes))
	if o.CompressedBlockCacheBytes > 0 {
		d.zCache = grocksdb.NewLRUCache(uint64(o.CompressedBlockCacheBytes))
	}
	d.dbOpts = d.newCFOptions(o, cfDefault)
	d.dbOpts.SetCreateIfMissing(true)
	d.dbOpts.SetCreateIfMissingColumnFamilies(true)
	d.dbOpts.SetMaxBackgroundJobs(o.MaxBackgroundJobs)
	d.dbOpts.SetMaxSubcompactions(uint32(o.MaxSubcompactions))
	d.dbOpts.SetMaxOpenFiles(o.MaxOpenFiles)
	d.dbOpts.SetBytesPerSync(uint64(o.BytesPerSync))
	if o.WALBytesPerSync > 0 {
		d.dbOpts.SetWALBytesPerSync(uint64(o.WALBytesPerSync))
	}
	if o.MaxTotalWALBytes > 0 {
		d.dbOpts.SetMaxTotalWalSize(uint64(o.MaxTotalWALBytes))
	}
	d.dbOpts.SetEnablePipelinedWrite(o.PipelinedWrite)
	if o.LowPriorityCompactions {
		lowerCompactionPriority()
	}
	d.dbOpts.SetManualWALFlush(o.ManualWALFlush)
	if o.RowCacheBytes > 0 {
		d.rowCache = grocksdb.NewLRUCache(uint64(o.RowCacheBytes))
		d.dbOpts.SetRowCache(d.rowCache)
	}
	d.dbOpts.SetEnableWriteThreadAdaptiveYield(false)
	d.dbOpts.SetWALRecoveryMode(walRecoveryMode(o.WALRecovery))
	d.dbOpts.SetKeepLogFileNum(4)
	d.dbOpts.SetMaxLogFileSize(16 << 20)
	if o.RateLimitBytesPerSec > 0 {
		d.dbOpts.SetRateLimiter(grocksdb.NewRateLimiter(o.RateLimitBytesPerSec, 100_000, 10))
	}
	if o.Statistics {
		d.dbOpts.EnableStatistics()
	}

	names := make([]string, 0, NumCFs+1)
	d.cfOpts = append(d.cfOpts, d.dbOpts)
	names = append(names, "default")
	for cf := CF(0); cf < NumCFs; cf++ {
		names = append(names, cf.String())
		d.cfOpts = append(d.cfOpts, d.newCFOptions(o, cf))
	}
	db, handles, err := grocksdb.OpenDbColumnFamilies(d.dbOpts, dir, names, d.cfOpts)
	if err != nil {
		return nil, fmt.Errorf("engine: open %s: %w", dir, err)
	}
	d.db = db
	d.handles = handles
	copy(d.cfs[:], handles[1:])
	for cf := range d.cfs {
		d.cfIDs[cf] = d.cfs[cf].ID()
	}

	d.readOpts = grocksdb.NewDefaultReadOptions()
	d.syncWO = grocksdb.NewDefaultWriteOptions()
	d.syncWO.SetSync(true)
	d.noSyncWO = grocksdb.NewDefaultWriteOptions()
	d.initNative()
	ok = true
	return d, nil
}

// newCFOptions builds the options of one column family; cfDefault gives the
// database-wide options object, which also serves the unused default family.
func (d *DB) newCFOptions(o tuning.Options, cf CF) *grocksdb.Options {
	opts := grocksdb.NewDefaultOptions()
	bbto := grocksdb.NewDefaultBlockBasedTableOptions()
	d.bbtos = append(d.bbtos, bbto)
	bbto.SetBlockCache(d.cache)
	if d.zCache != nil {
		bbto.SetBlockCacheCompressed(d.zCache)
	}
	bbto.SetBlockSize(o.BlockSizeBytes)
	bbto.SetFormatVersion(5)
	bbto.SetCacheIndexAndFilterBlocks(o.CacheIndexAndFilterBlocks)
	bbto.SetCacheIndexAndFilterBlocksWithHighPriority(true)
	bbto.SetPinL0FilterAndIndexBlocksInCache(o.PinL0FilterAndIndexBlocks)

	writeBuffer := o.WriteBufferBytes
	bloom := false
	switch cf {
	case CFKV:
		// Every read of the latest revision is a point lookup here, and so
		// is every write's read of the version it supersedes. The memtable
		// filter lets a lookup skip the skiplist search of each memtable
		// that lacks the key (a create misses them all).
		bloom = true
		bbto.SetDataBlockIndexType(grocksdb.KDataBlockIndexTypeBinarySearchAndHash)
		opts.SetMemtableWholeKeyFiltering(true)
		opts.SetMemTablePrefixBloomSizeRatio(memtableBloomRatio)
	case CFMeta, CFLease:
		bloom = true
		writeBuffer = smallMemtableBytes
	case CFHistory, CFEvents, CFRaft:
		// Reached by seeks and scans, where a whole-key filter never helps.
	}
	if bloom && o.BloomBitsPerKey > 0 {
		bbto.SetFilterPolicy(grocksdb.NewBloomFilterFull(o.BloomBitsPerKey))
	}
	opts.SetBlockBasedTableFactory(bbto)

	opts.SetWriteBufferSize(uint64(writeBuffer))
	opts.SetMaxWriteBufferNumber(o.MaxWriteBufferNumber)
	opts.SetMinWriteBufferNumberToMerge(o.MinWriteBufferNumberToMerge)
	opts.SetLevel0FileNumCompactionTrigger(o.Level0FileNumCompactionTrigger)
	opts.SetLevel0SlowdownWritesTrigger(o.Level0SlowdownWritesTrigger)
	opts.SetLevel0StopWritesTrigger(o.Level0StopWritesTrigger)
	opts.SetTargetFileSizeBase(uint64(o.TargetFileSizeBaseBytes))
	opts.SetMaxBytesForLevelBase(uint64(o.MaxBytesForLevelBaseBytes))
	opts.SetLevelCompactionDynamicLevelBytes(o.DynamicLevelBytes)

	const numLevels = 7
	opts.SetNumLevels(numLevels)
	perLevel := make([]grocksdb.CompressionType, numLevels)
	for i := range perLevel {
		if i < o.UncompressedLevels {
			perLevel[i] = grocksdb.NoCompression
		} else {
			perLevel[i] = compressionType(o.Compression)
		}
	}
	if cf == CFRaft {
		// Raft entries live briefly and are read back soon after they are
		// written; compressing them costs CPU on the write path for nothing.
		for i := range perLevel {
			perLevel[i] = grocksdb.NoCompression
		}
		opts.SetBottommostCompression(grocksdb.NoCompression)
	} else {
		opts.SetBottommostCompression(compressionType(o.BottommostCompression))
	}
	opts.SetCompressionPerLevel(perLevel)

	if o.BlobFiles && (cf == CFKV || cf == CFHistory) {
		opts.EnableBlobFiles(true)
		opts.SetMinBlobSize(uint64(o.MinBlobBytes))
		opts.EnableBlobGC(true)
		opts.SetBlobCompressionType(compressionType(o.Compression))
	}
	return opts
}

func compressionType(c tuning.Compression) grocksdb.CompressionType {
	switch c {
	case tuning.CompressionSnappy:
		return grocksdb.SnappyCompression
	case tuning.CompressionLZ4:
		return grocksdb.LZ4Compression
	case tuning.CompressionZSTD:
		return grocksdb.ZSTDCompression
	default:
		return grocksdb.NoCompression
	}
}

func walRecoveryMode(m tuning.WALRecovery) grocksdb.WALRecoveryMode {
	switch m {
	case tuning.WALRecoveryAbsolute:
		return grocksdb.AbsoluteConsistencyRecovery
	case tuning.WALRecoveryPointInTime:
		return grocksdb.PointInTimeRecovery
	default:
		return grocksdb.TolerateCorruptedTailRecordsRecovery
	}
}

// Dir returns the directory the engine was opened in.
func (d *DB) Dir() string { return d.dir }

// Options returns the options the engine was opened with.
func (d *DB) Options() tuning.Options { return d.opts }

// Close flushes nothing and closes the database, freeing every option, cache,
// filter and handle. Data written with sync=false survives a process crash
// (it is in the OS page cache) but not a power loss; callers that need it
// durable write a synced batch first. Close fails with ErrOpenHandles while
// iterators or snapshots are open. Closing twice returns ErrClosed.
func (d *DB) Close() error {
	d.closeMu.Lock()
	defer d.closeMu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if n := d.openIters.Load(); n > 0 {
		return fmt.Errorf("%w: %d", ErrOpenHandles, n)
	}
	d.closed = true
	for _, h := range d.handles {
		h.Destroy()
	}
	d.handles = nil
	d.db.Close()
	d.db = nil
	d.c = native{}
	d.readOpts.Destroy()
	d.syncWO.Destroy()
	d.noSyncWO.Destroy()
	d.freeOptions()
	return nil
}

// freeOptions destroys the option objects and the cache; the database must
// already be closed or never opened.
func (d *DB) freeOptions() {
	for _, o := range d.cfOpts {
		o.Destroy()
	}
	if len(d.cfOpts) == 0 && d.dbOpts != nil {
		d.dbOpts.Destroy()
	}
	d.cfOpts, d.dbOpts = nil, nil
	for _, b := range d.bbtos {
		b.Destroy()
	}
	d.bbtos = nil
	if d.rowCache != nil {
		d.rowCache.Destroy()
		d.rowCache = nil
	}
	if d.cache != nil {
		d.cache.Destroy()
		d.cache = nil
	}
	if d.zCache != nil {
		d.zCache.Destroy()
		d.zCache = nil
	}
}

// acquire read-holds closeMu; it fails once the DB is closed.
func (d *DB) acquire() error {
	d.closeMu.RLock()
	if d.closed {
		d.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (d *DB) release() { d.closeMu.RUnlock() }

// Get returns a copy of the value of key in cf; found is false when the key
// is absent.
func (d *DB) Get(cf CF, key []byte) (value []byte, found bool, err error) {
	return d.GetAppend(nil, cf, key)
}

// GetAppend appends the value of key in cf to dst and returns the result
// (dst itself when the key is absent); found is false when the key is
// absent. With spare capacity in dst it allocates nothing: callers that
// read in a loop pass back their buffer, as in buf, ok, err =
// db.GetAppend(buf[:0], cf, key). A found value is never nil.
func (d *DB) GetAppend(dst []byte, cf CF, key []byte) (value []byte, found bool, err error) {
	if err := d.acquire(); err != nil {
		return dst, false, err
	}
	defer d.release()
	return d.get(dst, d.c.readOpts, cf, key)
}

// get is getAppend with a never-nil found value. REQUIRES: closeMu
// read-held.
func (d *DB) get(dst []byte, ro *C.rocksdb_readoptions_t, cf CF, key []byte) ([]byte, bool, error) {
	v, ok, err := d.getAppend(dst, ro, cf, key)
	if ok && v == nil {
		v = []byte{}
	}
	return v, ok, err
}

// Write applies the batch atomically. With sync the WAL is fsynced before
// Write returns; a failed synced write is fatal to the caller (see the
// package doc). The batch may be reused after Reset.
func (d *DB) Write(b *Batch, sync bool) error {
	if err := d.acquire(); err != nil {
		return err
	}
	defer d.release()
	if b.Empty() {
		if sync {
			return d.syncWALLocked()
		}
		return nil
	}
	if err := d.writeRep(b.finish(), sync); err != nil {
		return fmt.Errorf("engine: write (sync=%t): %w", sync, err)
	}
	return nil
}

// SyncWAL fsyncs the WAL, making every earlier unsynced write durable. A
// failure is fatal to the caller.
func (d *DB) SyncWAL() error {
	if err := d.acquire(); err != nil {
		return err
	}
	defer d.release()
	return d.syncWALLocked()
}

// REQUIRES: closeMu read-held.
func (d *DB) syncWALLocked() error {
	if err := d.db.FlushWAL(true); err != nil {
		return fmt.Errorf("engine: sync wal: %w", err)
	}
	return nil
}

// Flush writes every column family's memtables to SST files and waits.
func (d *DB) Flush() error {
	if err := d.acquire(); err != nil {
		return err
	}
	defer d.release()
	fo := grocksdb.NewDefaultFlushOptions()
	defer fo.Destroy()
	fo.SetWait(true)
	for cf := CF(0); cf < NumCFs; cf++ {
		if err := d.db.FlushCF(d.cfs[cf], fo); err != nil {
			return fmt.Errorf("engine: flush %s: %w", cf, err)
		}
	}
	return nil
}

// CompactRange compacts [start, end) of cf down to the bottommost level,
// dropping deleted and overwritten entries; nil bounds are open. It blocks
// until done but never blocks writers: RocksDB compacts beside them.
func (d *DB) CompactRange(cf CF, start, end []byte) error {
	if err := d.acquire(); err != nil {
		return err
	}
	defer d.release()
	co := grocksdb.NewCompactRangeOptions()
	defer co.Destroy()
	co.SetBottommostLevelCompaction(grocksdb.KForceOptimized)
	co.SetExclusiveManualCompaction(false)
	d.db.CompactRangeCFOpt(d.cfs[cf], grocksdb.Range{Start: start, Limit: end}, co)
	return nil
}

// LatestSequence returns the sequence number of the last write: it moves
// with every write the engine takes, foreground or background (a
// compaction's deletions included), and never otherwise.
func (d *DB) LatestSequence() (uint64, error) {
	if err := d.acquire(); err != nil {
		return 0, err
	}
	defer d.release()
	return d.db.GetLatestSequenceNumber(), nil
}

// DeleteFilesInRange deletes the SST files of cf whose keys all lie in
// [start, end] (both inclusive), without reading or rewriting anything;
// files that straddle a bound stay, and so do L0's (RocksDB drops files
// only from the levels below, whose files do not overlap). It writes and
// syncs the manifest: not for every small deletion. Readers that still hold a snapshot or
// iterator over the range lose what those files held: callers use it only
// for ranges already deleted that nobody reads, such as a truncated log.
func (d *DB) DeleteFilesInRange(cf CF, start, end []byte) error {
	if err := d.acquire(); err != nil {
		return err
	}
	defer d.release()
	if err := d.db.DeleteFileInRangeCF(d.cfs[cf], grocksdb.Range{Start: start, Limit: end}); err != nil {
		return fmt.Errorf("engine: delete files in range of %s: %w", cf, err)
	}
	return nil
}

// Checkpoint writes a consistent, openable copy of the database into dir,
// which must not exist. SST files are hard-linked where the file system
// allows, so a checkpoint costs little space until the live files change.
func (d *DB) Checkpoint(dir string) error {
	if err := d.acquire(); err != nil {
		return err
	}
	defer d.release()
	// Write out WAL records buffered under ManualWALFlush, so the
	// checkpoint's WAL holds everything written before this call.
	if err := d.db.FlushWAL(false); err != nil {
		return fmt.Errorf("engine: checkpoint: flush wal: %w", err)
	}
	cp, err := d.db.NewCheckpoint()
	if err != nil {
		return fmt.Errorf("engine: checkpoint: %w", err)
	}
	defer cp.Destroy()
	if err := cp.CreateCheckpoint(dir, 0); err != nil {
		return fmt.Errorf("engine: checkpoint %s: %w", dir, err)
	}
	return nil
}

// lowerCompactionPriority puts the compaction thread pool (RocksDB's LOW
// pool, shared by every engine of the process) at the lowest CPU priority;
// each thread applies it before its next job. Idempotent.
func lowerCompactionPriority() {
	lowerOnce.Do(func() {
		env := grocksdb.NewDefaultEnv()
		env.LowerThreadPoolCPUPriority()
		env.Destroy() // the handle only: the default Env lives on
	})
}

var lowerOnce sync.Once
