package bench

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Options configures one run. Each field's comment states its default;
// DefaultOptions fills them and Validate reports every violation at once.
type Options struct {
	// Endpoints are the client URLs or host:port pairs. Default
	// ["127.0.0.1:2379"].
	Endpoints []string
	// Conns is the number of gRPC connections (clientv3.Client values).
	// Default 1.
	Conns int
	// Clients is the number of concurrent workers, spread round-robin over
	// the connections. Default 1.
	Clients int
	// KeySize is the length of every key in bytes, prefix included.
	// Default 32.
	KeySize int
	// ValSize is the length of every value in bytes. Default 256.
	ValSize int
	// KeySpace is the number of distinct keys the workers choose from,
	// uniformly at random. Default 10000.
	KeySpace int
	// Prefix starts every key. Default "/bench/".
	Prefix string
	// Rate limits the requests per second of all workers together;
	// 0 means unlimited. Default 0.
	Rate float64
	// Duration bounds the run's time. Default 10s. Ignored when Total is
	// set.
	Duration time.Duration
	// Total bounds the run's operations instead of its time; 0 means use
	// Duration. Default 0.
	Total int64
	// Consistency is "l" (linearizable) or "s" (serializable) for reads.
	// Default "l".
	Consistency string
	// TargetName labels the results ("metastore", "etcd"). Default
	// "metastore".
	TargetName string
	// OutDir receives the result JSON and profiles; "" writes nothing.
	// Default ".".
	OutDir string
	// PprofURL is the server's URL, or its /debug/pprof/ URL; if set, CPU,
	// mutex and block profiles covering the run and a heap profile at its
	// end are saved in OutDir. Default "".
	PprofURL string
	// PprofSeconds is the length of the CPU, mutex and block profiles.
	// Default 0: the run's Duration, or 10s with Total.
	PprofSeconds int
	// RequestTimeout bounds one request. Default 10s.
	RequestTimeout time.Duration
	// DialTimeout bounds connecting. Default 5s.
	DialTimeout time.Duration
	// Interval is the width of one throughput-over-time bucket. Default 1s.
	Interval time.Duration
	// Progress receives the progress bar or lines; nil means none.
	// ProgressBar draws a bar with carriage returns instead of lines.
	Progress    io.Writer `json:"-"`
	ProgressBar bool      `json:"-"`
	// Command is the command line that made the run, stored in the
	// result. Default "".
	Command string

	// Scenario-specific options.

	// PrefixPage: range lists pages of this many keys across the prefix
	// (continuing from the last key, as Kubernetes does) instead of point
	// gets when > 0; txn-k8s uses it as its list page size. Default 0
	// (range), 500 (txn-k8s).
	PrefixPage int
	// Prefill loads the key space before the clock starts (range,
	// txn-k8s). Default true.
	Prefill bool
	// TxnMix weighs the txn-k8s operations, as
	// "create=10,update=60,delete=10,get=15,list=5".
	TxnMix string
	// Watchers and WatchStreams: watch opens Watchers watchers on the
	// prefix spread over WatchStreams gRPC streams. Default 100 and 10.
	Watchers     int
	WatchStreams int
	// LeaseTTL is the TTL of each granted lease. Default 30s.
	LeaseTTL time.Duration
	// LeaseKeys is the number of keys put with each lease. Default 2.
	LeaseKeys int
	// LeaseKeepalives is the number of keep-alives sent for each lease
	// before it is revoked. Default 1.
	LeaseKeepalives int
	// LoadKeys is the number of keys load writes. Default KeySpace.
	LoadKeys int64
	// TxnOps is the number of puts per load transaction (1 sends plain
	// puts); it must not exceed the server's --max-txn-ops. Default 128.
	TxnOps int
	// CompactInterval is the time between compactions. Default 5s.
	CompactInterval time.Duration
	// CompactRetention is the number of revisions kept behind the current
	// one by each compaction. Default 10000.
	CompactRetention int64
}

// DefaultOptions returns the options with every default filled.
func DefaultOptions() Options {
	return Options{
		Endpoints:        []string{"127.0.0.1:2379"},
		Conns:            1,
		Clients:          1,
		KeySize:          32,
		ValSize:          256,
		KeySpace:         10000,
		Prefix:           "/bench/",
		Duration:         10 * time.Second,
		Consistency:      "l",
		TargetName:       "metastore",
		OutDir:           ".",
		RequestTimeout:   10 * time.Second,
		DialTimeout:      5 * time.Second,
		Interval:         time.Second,
		Prefill:          true,
		TxnMix:           defaultTxnMix,
		Watchers:         100,
		WatchStreams:     10,
		LeaseTTL:         30 * time.Second,
		LeaseKeys:        2,
		LeaseKeepalives:  1,
		TxnOps:           128,
		CompactInterval:  5 * time.Second,
		CompactRetention: 10000,
	}
}

// maxKeySpace bounds KeySpace: keys are generated before the clock starts
// and held in memory (KeySpace*KeySize bytes).
const maxKeySpace = 1 << 26

// Validate reports every invalid field, joined.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("bench: "+format, args...)) }
	if len(o.Endpoints) == 0 {
		bad("no endpoints")
	}
	if o.Conns < 1 {
		bad("conns %d < 1", o.Conns)
	}
	if o.Clients < 1 {
		bad("clients %d < 1", o.Clients)
	}
	if o.KeySpace < 1 || o.KeySpace > maxKeySpace {
		bad("key-space %d not in [1, %d]", o.KeySpace, maxKeySpace)
	}
	if need := len(o.Prefix) + hexDigits(uint64(max(o.KeySpace, int(o.LoadKeys)))); o.KeySize < need {
		bad("key-size %d too small for prefix %q and key-space: need >= %d", o.KeySize, o.Prefix, need)
	}
	if o.ValSize < 0 {
		bad("val-size %d < 0", o.ValSize)
	}
	if o.Rate < 0 {
		bad("rate %g < 0", o.Rate)
	}
	if o.Total < 0 {
		bad("total %d < 0", o.Total)
	}
	if o.Total == 0 && o.Duration <= 0 {
		bad("neither duration nor total is positive")
	}
	if o.Consistency != "l" && o.Consistency != "s" {
		bad("consistency %q is neither l nor s", o.Consistency)
	}
	if o.TargetName == "" || strings.ContainsAny(o.TargetName, " \t\n/") {
		bad("target-name %q must be non-empty without spaces or slashes", o.TargetName)
	}
	if o.RequestTimeout <= 0 {
		bad("request timeout %v <= 0", o.RequestTimeout)
	}
	if o.Interval < 10*time.Millisecond {
		bad("interval %v < 10ms", o.Interval)
	}
	if o.PprofURL != "" && o.OutDir == "" {
		bad("pprof-url needs an out directory for the profiles")
	}
	if o.PprofSeconds < 0 {
		bad("pprof-seconds %d < 0", o.PprofSeconds)
	}
	if o.PrefixPage < 0 {
		bad("prefix-page %d < 0", o.PrefixPage)
	}
	if _, err := parseTxnMix(o.TxnMix); err != nil {
		errs = append(errs, err)
	}
	if o.Watchers < 1 || o.WatchStreams < 1 {
		bad("watchers %d and watch-streams %d must be >= 1", o.Watchers, o.WatchStreams)
	}
	if o.LeaseTTL < time.Second {
		bad("lease-ttl %v < 1s", o.LeaseTTL)
	}
	if o.LeaseKeys < 0 || o.LeaseKeepalives < 0 {
		bad("lease-keys %d and lease-keepalives %d must be >= 0", o.LeaseKeys, o.LeaseKeepalives)
	}
	if o.LoadKeys < 0 {
		bad("load keys %d < 0", o.LoadKeys)
	}
	if o.TxnOps < 1 {
		bad("txn-ops %d < 1", o.TxnOps)
	}
	if o.CompactInterval <= 0 {
		bad("compact-interval %v <= 0", o.CompactInterval)
	}
	if o.CompactRetention < 0 {
		bad("compact-retention %d < 0", o.CompactRetention)
	}
	return errors.Join(errs...)
}

// hexDigits is the number of hexadecimal digits of n-1, at least 1: the
// width of the largest key index below n.
func hexDigits(n uint64) int {
	d := 1
	for v := n - 1; n > 0 && v >= 16; v >>= 4 {
		d++
	}
	return d
}
