package mvcc

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes a Store. The zero value means every default; WithDefaults
// fills them in one place and Validate reports every violation at once.
type Config struct {
	// CompactionBatchLimitRevs is the number of revisions in etcd's sense,
	// key versions (events: a txn of 128 puts is 128), that the background
	// compactor processes per batch while holding the writer lock; a batch
	// ends with a whole revision.
	// Default 1000 (etcd's --experimental-compaction-batch-limit).
	CompactionBatchLimitRevs int
	// CompactionBatchInterval is the pause between two compaction batches,
	// so writers are never held for long. Default 10ms.
	CompactionBatchInterval time.Duration
	// CompactionBusyPercent bounds the share of time the background
	// compactor's batches take while the store serves requests: after a
	// batch it pauses at least CompactionBatchInterval, and longer when
	// the batch itself took long (a batch of 5ms at 10% pauses 45ms). When
	// nothing was applied or read since the previous pause began, the
	// store is idle and the pause is CompactionBatchInterval alone.
	// Default 10; 100: only CompactionBatchInterval.
	CompactionBusyPercent int
	// SubscriberBufferEvents is the number of events buffered per live
	// subscriber before it is marked lagging. A single revision larger than
	// the buffer is still delivered when the buffer is empty. Default 1024.
	SubscriberBufferEvents int
	// MaxLeases bounds the in-memory lease table; LeaseGrant beyond it
	// fails with ErrTooManyLeases. Default 1_000_000.
	MaxLeases int
	// CountIndexBucketKeys is the number of live keys per bucket of the
	// count index (countindex.go), which makes the count of a large range
	// cost about two buckets' walk. Default 1024; negative: no index,
	// every count walks its range.
	CountIndexBucketKeys int
	// LatestCacheBytes bounds the writer's cache of the records it wrote
	// last (latestcache.go), which spares a put of a recently written key
	// the engine search for the version it replaces. Default 32 MiB;
	// negative: no cache.
	LatestCacheBytes int64
}

// Defaults.
const (
	DefaultCompactionBatchLimitRevs = 1000
	DefaultCompactionBatchInterval  = 10 * time.Millisecond
	DefaultCompactionBusyPercent    = 10
	DefaultSubscriberBufferEvents   = 1024
	DefaultMaxLeases                = 1_000_000
	DefaultLatestCacheBytes         = 32 << 20
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.CompactionBatchLimitRevs == 0 {
		c.CompactionBatchLimitRevs = DefaultCompactionBatchLimitRevs
	}
	if c.CompactionBatchInterval == 0 {
		c.CompactionBatchInterval = DefaultCompactionBatchInterval
	}
	if c.CompactionBusyPercent == 0 {
		c.CompactionBusyPercent = DefaultCompactionBusyPercent
	}
	if c.SubscriberBufferEvents == 0 {
		c.SubscriberBufferEvents = DefaultSubscriberBufferEvents
	}
	if c.MaxLeases == 0 {
		c.MaxLeases = DefaultMaxLeases
	}
	if c.CountIndexBucketKeys == 0 {
		c.CountIndexBucketKeys = DefaultCountIndexBucketKeys
	}
	if c.LatestCacheBytes == 0 {
		c.LatestCacheBytes = DefaultLatestCacheBytes
	}
	return c
}

// Validate reports every invalid field of c (after defaults are filled).
func (c Config) Validate() error {
	var errs []error
	if c.CompactionBatchLimitRevs < 1 {
		errs = append(errs, fmt.Errorf("CompactionBatchLimitRevs %d < 1", c.CompactionBatchLimitRevs))
	}
	if c.CompactionBatchInterval < 0 {
		errs = append(errs, fmt.Errorf("CompactionBatchInterval %s < 0", c.CompactionBatchInterval))
	}
	if c.CompactionBusyPercent < 1 || c.CompactionBusyPercent > 100 {
		errs = append(errs, fmt.Errorf("CompactionBusyPercent %d not in [1, 100]", c.CompactionBusyPercent))
	}
	if c.SubscriberBufferEvents < 1 {
		errs = append(errs, fmt.Errorf("SubscriberBufferEvents %d < 1", c.SubscriberBufferEvents))
	}
	if c.MaxLeases < 1 {
		errs = append(errs, fmt.Errorf("MaxLeases %d < 1", c.MaxLeases))
	}
	return errors.Join(errs...)
}
