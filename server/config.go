package server

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/metastore/metastore/mvcc"
	"github.com/metastore/metastore/tuning"
)

// Config is one member's configuration. Field comments give the etcd flag
// each field answers to and its default, which DefaultConfig fills in.
type Config struct {
	// Name is the member's human-readable name (--name). Default "default".
	Name string
	// DataDir holds the engine and staged snapshots (--data-dir).
	// Default "<name>.etcd", as etcd.
	DataDir string
	// ListenClientURLs are the client listeners (--listen-client-urls).
	// Default http://localhost:2379.
	ListenClientURLs []string
	// AdvertiseClientURLs are the client URLs told to the cluster
	// (--advertise-client-urls). Default http://localhost:2379.
	AdvertiseClientURLs []string
	// ListenPeerURLs are the peer listeners (--listen-peer-urls).
	// Default http://localhost:2380.
	ListenPeerURLs []string
	// InitialAdvertisePeerURLs are this member's peer URLs
	// (--initial-advertise-peer-urls). Default http://localhost:2380.
	InitialAdvertisePeerURLs []string
	// InitialCluster lists the initial members (--initial-cluster).
	// Default "<name>=<initial advertise peer URLs>".
	InitialCluster string
	// InitialClusterState is "new" or "existing" (--initial-cluster-state).
	// Default "new".
	InitialClusterState string
	// InitialClusterToken seeds member and cluster IDs
	// (--initial-cluster-token). Default "etcd-cluster".
	InitialClusterToken string

	// SnapshotCount is how many applied entries trigger a raft log
	// truncation (--snapshot-count). Default 10000.
	SnapshotCount uint64
	// SnapshotCatchUpEntries are kept after a truncation so slow followers
	// catch up from the log instead of a snapshot
	// (--experimental-snapshot-catchup-entries). Default 5000.
	SnapshotCatchUpEntries uint64
	// SnapshotBytes also triggers a truncation after this many bytes of
	// applied entries, however few they are (--snapshot-bytes; 0: only
	// SnapshotCount). Default 64 MiB.
	SnapshotBytes uint64
	// SnapshotCatchUpBytes bounds the entries kept after a truncation by
	// size too, though at least about one second of entries stays
	// (--snapshot-catchup-bytes; 0: only SnapshotCatchUpEntries). Default
	// 64 MiB.
	SnapshotCatchUpBytes uint64
	// HeartbeatInterval is the raft tick (--heartbeat-interval, in ms on
	// the command line). Default 100ms.
	HeartbeatInterval time.Duration
	// ElectionTimeout (--election-timeout, in ms). Default 1000ms.
	ElectionTimeout time.Duration

	// QuotaBackendBytes raises the NOSPACE alarm when the engine's live
	// data exceeds it (--quota-backend-bytes). Default 2 GiB as etcd;
	// 0 means the default, negative disables the quota.
	QuotaBackendBytes int64
	// DiskReserveBytes raises the NOSPACE alarm when the free space of the
	// data directory's filesystem falls below it, so writes are refused
	// with etcd's "database space exceeded" while RocksDB still has room
	// to flush, compact and write the alarm itself (--disk-reserve-bytes,
	// a MetaStore flag; diskspace.go). Default 256 MiB; 0 means the
	// default, negative disables the check.
	DiskReserveBytes int64
	// diskFreeBytes reports the free bytes of the filesystem holding dir,
	// for tests that inject a full disk. Default nil: statfsFreeBytes (not
	// filled in, so that configurations stay comparable).
	diskFreeBytes func(dir string) (uint64, error)
	// MaxRequestBytes bounds a client request (--max-request-bytes).
	// Default 1.5 MiB.
	MaxRequestBytes int
	// MaxTxnOps bounds the operations of one txn (--max-txn-ops).
	// Default 128.
	MaxTxnOps int
	// MaxConcurrentStreams bounds gRPC streams per client connection
	// (--max-concurrent-streams). Default 2^32-1 as etcd.
	MaxConcurrentStreams uint32
	// MaxPendingProposals bounds proposals waiting for raft; beyond it
	// clients get "etcdserver: too many requests". Default 4096.
	MaxPendingProposals int
	// RequestTimeout bounds how long a write waits to be applied.
	// Default 7s (etcd: 5s + 2 * election timeout).
	RequestTimeout time.Duration
	// ShutdownTimeout bounds how long SIGTERM waits for in-flight requests
	// before closing connections. Default 10s.
	ShutdownTimeout time.Duration

	// AutoCompactionMode is "periodic" or "revision"
	// (--auto-compaction-mode). Default "periodic".
	AutoCompactionMode string
	// AutoCompactionRetention: for periodic a duration ("1h", or a plain
	// number of hours), for revision a number of revisions
	// (--auto-compaction-retention). Default "0" (off).
	AutoCompactionRetention string

	// LeaseCheckpointInterval is how often the leader persists remaining
	// lease TTLs through raft, so a leader change does not reset them.
	// Default 5m (etcd's --experimental-lease-checkpoint-interval).
	LeaseCheckpointInterval time.Duration
	// LeaseCheckInterval is how often the leader looks for expired leases.
	// Default 500ms.
	LeaseCheckInterval time.Duration
	// MaxLeases bounds the number of leases. Default 1,000,000.
	MaxLeases int
	// CompactionBatchLimit, CompactionSleepInterval and
	// CompactionBusyPercent pace the background compaction
	// (mvcc.Config: revisions per batch, the least pause between
	// batches, the largest share of time batches take). Defaults 1000,
	// 10ms (etcd's) and 10.
	CompactionBatchLimit    int
	CompactionSleepInterval time.Duration
	CompactionBusyPercent   int
	// CountIndexBucketKeys is the bucket size of the count index that
	// makes the count of a large range cheap (mvcc.Config); -1 disables
	// it. Default 1024.
	CountIndexBucketKeys int
	// LatestCacheBytes bounds the apply's cache of the latest records it
	// wrote (mvcc.Config), which spares a put of a recently written key
	// the engine search for the version it replaces; 0 disables it.
	// Default 32 MiB.
	LatestCacheBytes int64
	// SnapshotChunkBytes is the chunk size of snapshots streamed to
	// followers (--snapshot-chunk-bytes). Default 1 MiB.
	SnapshotChunkBytes int

	// Engine are the RocksDB options (--engine-preset, then
	// --engine-options-file, then overrides). Default tuning.Default().
	Engine tuning.Options

	// InitialCorruptCheck compares this member's HashKV with its peers'
	// before it serves clients and refuses to start on a mismatch
	// (--experimental-initial-corrupt-check). Default false, as etcd.
	InitialCorruptCheck bool
	// CorruptCheckTime is how often the leader compares HashKV across the
	// members and raises the CORRUPT alarm on a mismatch
	// (--experimental-corrupt-check-time). Default 0: off, as etcd.
	CorruptCheckTime time.Duration

	// ExperimentalPeerFaults mounts the test-only fault hook on the peer
	// listener at /debug/faults (see faultsHandler) so tests can partition,
	// drop and delay raft traffic of a real process
	// (--experimental-peer-faults). Default false: never set it in
	// production, anyone who reaches the peer port could partition the member.
	ExperimentalPeerFaults bool

	// ListenMetricsURLs are extra listeners that serve /metrics and the
	// health endpoints only (--listen-metrics-urls). Default none.
	ListenMetricsURLs []string
	// Metrics is "basic" or "extensive" (--metrics); extensive adds the
	// grpc_server_handling_seconds histogram, as etcd. Default "basic".
	Metrics string
	// EnablePprof serves /debug/pprof/ on the client listeners
	// (--enable-pprof). Default false.
	EnablePprof bool
	// EnableGRPCGateway serves etcd's JSON gateway under /v3/ on the client
	// listeners (--enable-grpc-gateway). Default true, as etcd.
	EnableGRPCGateway bool
	// WarningApplyDuration: requests that take longer are logged with
	// "apply request took too long" and counted in slow_apply_total
	// (--warning-apply-duration). Default 100ms; 0 means the default.
	WarningApplyDuration time.Duration

	// AuthToken is the token type (--auth-token): "simple" or
	// "jwt,pub-key=...,priv-key=...,sign-method=...". Default "simple".
	AuthToken string
	// AuthTokenTTL is how long a simple token lives after its last use
	// (--auth-token-ttl, in seconds on the command line). Default 300s.
	AuthTokenTTL time.Duration
	// BcryptCost hashes user passwords (--bcrypt-cost). Default 10.
	BcryptCost int

	// ClientTLS secures the https:// client listeners (--cert-file,
	// --key-file, --trusted-ca-file, --client-cert-auth, --auto-tls). With
	// ClientCertAuth and auth on, a request without a token is made by the
	// user named by its certificate's common name. Default: none.
	ClientTLS TLSInfo
	// PeerTLS secures peer traffic (--peer-cert-file, --peer-key-file,
	// --peer-trusted-ca-file, --peer-client-cert-auth, --peer-auto-tls).
	// Default: none (cleartext h2c).
	PeerTLS TLSInfo
	// CipherSuites restricts TLS 1.2 cipher suites, by IANA name
	// (--cipher-suites). Default: Go's secure suites.
	CipherSuites []string
	// TLSMinVersion is "TLS1.2" or "TLS1.3" (--tls-min-version). Default
	// "TLS1.2".
	TLSMinVersion string

	// Logger receives the server's logs. Default a production zap logger.
	Logger *zap.Logger
}

// DefaultConfig returns the defaults every field's comment states.
func DefaultConfig() Config {
	return Config{
		Name:                     "default",
		ListenClientURLs:         []string{"http://localhost:2379"},
		AdvertiseClientURLs:      []string{"http://localhost:2379"},
		ListenPeerURLs:           []string{"http://localhost:2380"},
		InitialAdvertisePeerURLs: []string{"http://localhost:2380"},
		InitialClusterState:      "new",
		InitialClusterToken:      "etcd-cluster",
		SnapshotCount:            10000,
		SnapshotCatchUpEntries:   5000,
		SnapshotBytes:            64 << 20,
		SnapshotCatchUpBytes:     64 << 20,
		HeartbeatInterval:        100 * time.Millisecond,
		ElectionTimeout:          1000 * time.Millisecond,
		QuotaBackendBytes:        2 << 30,
		DiskReserveBytes:         defaultDiskReserveBytes,
		MaxRequestBytes:          1572864,
		MaxTxnOps:                128,
		MaxConcurrentStreams:     ^uint32(0),
		MaxPendingProposals:      4096,
		RequestTimeout:           7 * time.Second,
		ShutdownTimeout:          10 * time.Second,
		AutoCompactionMode:       "periodic",
		AutoCompactionRetention:  "0",
		LeaseCheckpointInterval:  5 * time.Minute,
		LeaseCheckInterval:       500 * time.Millisecond,
		MaxLeases:                1_000_000,
		CompactionBatchLimit:     mvcc.DefaultCompactionBatchLimitRevs,
		CompactionSleepInterval:  mvcc.DefaultCompactionBatchInterval,
		CompactionBusyPercent:    mvcc.DefaultCompactionBusyPercent,
		CountIndexBucketKeys:     mvcc.DefaultCountIndexBucketKeys,
		LatestCacheBytes:         mvcc.DefaultLatestCacheBytes,
		SnapshotChunkBytes:       1 << 20,
		Engine:                   tuning.Default(),
		Metrics:                  "basic",
		EnableGRPCGateway:        true,
		WarningApplyDuration:     100 * time.Millisecond,
		AuthToken:                "simple",
		AuthTokenTTL:             300 * time.Second,
		BcryptCost:               bcrypt.DefaultCost,
	}
}

// fillDerived fills the fields whose defaults depend on others.
func (c *Config) fillDerived() {
	if c.DataDir == "" {
		c.DataDir = c.Name + ".etcd"
	}
	if c.InitialCluster == "" {
		parts := make([]string, 0, len(c.InitialAdvertisePeerURLs))
		for _, u := range c.InitialAdvertisePeerURLs {
			parts = append(parts, c.Name+"="+u)
		}
		c.InitialCluster = strings.Join(parts, ",")
	}
	if c.QuotaBackendBytes == 0 {
		c.QuotaBackendBytes = 2 << 30
	}
	if c.DiskReserveBytes == 0 {
		c.DiskReserveBytes = defaultDiskReserveBytes
	}
	if c.Metrics == "" {
		c.Metrics = "basic"
	}
	if c.WarningApplyDuration == 0 {
		c.WarningApplyDuration = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.AuthTokenTTL == 0 {
		c.AuthTokenTTL = 300 * time.Second
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = bcrypt.DefaultCost
	}
}

// Validate reports every invalid field at once.
func (c *Config) Validate() error {
	c.fillDerived()
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Name == "" {
		bad("--name must not be empty")
	}
	checkURLs := func(flag string, urls []string) {
		if len(urls) == 0 {
			bad("%s must not be empty", flag)
		}
		for _, u := range urls {
			if err := checkURL(u); err != nil {
				bad("%s: %v", flag, err)
			}
		}
	}
	checkURLs("--listen-client-urls", c.ListenClientURLs)
	checkURLs("--advertise-client-urls", c.AdvertiseClientURLs)
	checkURLs("--listen-peer-urls", c.ListenPeerURLs)
	checkURLs("--initial-advertise-peer-urls", c.InitialAdvertisePeerURLs)
	for _, u := range c.ListenMetricsURLs {
		if err := checkURL(u); err != nil {
			bad("--listen-metrics-urls: %v", err)
		}
	}
	if c.Metrics != "basic" && c.Metrics != "extensive" {
		bad("--metrics must be basic or extensive, not %q", c.Metrics)
	}
	if c.WarningApplyDuration < 0 {
		bad("--warning-apply-duration must not be negative")
	}
	if c.CorruptCheckTime < 0 {
		bad("--experimental-corrupt-check-time must not be negative")
	}
	if c.InitialClusterState != "new" && c.InitialClusterState != "existing" {
		bad("--initial-cluster-state must be new or existing, not %q", c.InitialClusterState)
	}
	if members, err := parseInitialCluster(c.InitialCluster, c.InitialClusterToken); err != nil {
		errs = append(errs, err)
	} else {
		found := false
		for _, m := range members {
			if m.Name == c.Name {
				found = true
				if !sameURLs(m.PeerURLs, c.InitialAdvertisePeerURLs) {
					bad("--initial-cluster has %s=%s but --initial-advertise-peer-urls is %s",
						c.Name, strings.Join(m.PeerURLs, ","), strings.Join(c.InitialAdvertisePeerURLs, ","))
				}
			}
		}
		if !found {
			bad("--initial-cluster %q does not name this member %q", c.InitialCluster, c.Name)
		}
	}
	if c.HeartbeatInterval <= 0 {
		bad("--heartbeat-interval must be positive")
	}
	if c.ElectionTimeout < 5*c.HeartbeatInterval {
		bad("--election-timeout (%v) must be at least 5 times --heartbeat-interval (%v)", c.ElectionTimeout, c.HeartbeatInterval)
	}
	if c.ElectionTimeout > 50*time.Second {
		bad("--election-timeout %v is longer than 50s", c.ElectionTimeout)
	}
	if c.SnapshotCount == 0 {
		bad("--snapshot-count must be positive")
	}
	if c.MaxRequestBytes <= 0 {
		bad("--max-request-bytes must be positive")
	}
	if c.MaxTxnOps <= 0 {
		bad("--max-txn-ops must be positive")
	}
	if c.MaxPendingProposals <= 0 {
		bad("max pending proposals must be positive")
	}
	if c.SnapshotChunkBytes < 4<<10 || c.SnapshotChunkBytes > 64<<20 {
		bad("--snapshot-chunk-bytes %d must be between 4 KiB and 64 MiB", c.SnapshotChunkBytes)
	}
	if c.MaxLeases <= 0 {
		bad("max leases must be positive")
	}
	if c.CompactionBatchLimit < 1 {
		bad("--compaction-batch-limit %d must be positive", c.CompactionBatchLimit)
	}
	if c.CompactionSleepInterval < 0 {
		bad("--compaction-sleep-interval %s must not be negative", c.CompactionSleepInterval)
	}
	if c.CompactionBusyPercent < 1 || c.CompactionBusyPercent > 100 {
		bad("--compaction-busy-percent %d must be between 1 and 100", c.CompactionBusyPercent)
	}
	if c.CountIndexBucketKeys == 0 || c.CountIndexBucketKeys < -1 {
		bad("--count-index-bucket-keys %d must be positive, or -1 to disable the index", c.CountIndexBucketKeys)
	}
	if c.LatestCacheBytes < 0 {
		bad("--latest-cache-bytes %d must not be negative (0 disables the cache)", c.LatestCacheBytes)
	}
	if c.LeaseCheckInterval <= 0 || c.LeaseCheckpointInterval <= 0 {
		bad("lease check and checkpoint intervals must be positive")
	}
	if _, _, err := parseAutoCompaction(c.AutoCompactionMode, c.AutoCompactionRetention); err != nil {
		errs = append(errs, err)
	}
	if err := c.Engine.Validate(); err != nil {
		bad("engine options: %v", err)
	}
	if c.AuthTokenTTL <= 0 {
		bad("--auth-token-ttl must be positive")
	}
	c.validateTLS(bad) // tls.go
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		bad("--bcrypt-cost %d must be between %d and %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	return errors.Join(errs...)
}

func sameURLs(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, u := range a {
		seen[normalizeURL(u)]++
	}
	for _, u := range b {
		seen[normalizeURL(u)]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func normalizeURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	return u.Scheme + "://" + u.Host
}
