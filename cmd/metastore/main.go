// Command metastore runs a MetaStore member: an etcd v3 compatible server
// on a RocksDB engine. It accepts etcd's flag names with etcd's defaults.
//
//	metastore --name m1 --data-dir /var/lib/metastore ...
//	metastore snapshot restore FILE --data-dir DIR ...
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/metastore/metastore/server"
	"github.com/metastore/metastore/tuning"
)

// minProcs is the floor on GOMAXPROCS. RocksDB calls (fsync above all)
// block their OS thread inside cgo, and Go hands that thread's P to another
// only when its monitor notices, after up to milliseconds; with one P (a
// member pinned to one core) every fsync would stall every goroutine.
// Measured with the member on one core (taskset -c 0): 3.0k puts/s with one
// P, 7.0k with four. An explicit GOMAXPROCS environment variable wins.
const minProcs = 4

// defaultGCPercent is the garbage collector's target when GOGC is not set.
// The member's data lives in RocksDB, outside the Go heap, so the live heap
// is small (the raft entry cache, bounded at 64 MiB by default, is most of
// it) and Go's 100 spends a tenth of a put's CPU collecting it; 200 halves
// the collections for at most one more live heap of memory. An explicit
// GOGC (or GOMEMLIMIT for a hard cap) wins.
const defaultGCPercent = 200

func main() {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		os.Exit(runSubcommand(os.Args[1], os.Args[2:]))
	}
	os.Exit(runServer(os.Args[1:]))
}

// exitUsage is the exit status for an unknown or invalid flag, as etcd.
const exitUsage = 2

// urlsFlag is a comma-separated list of URLs.
type urlsFlag []string

func (u *urlsFlag) String() string { return strings.Join(*u, ",") }
func (u *urlsFlag) Set(s string) error {
	*u = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*u = append(*u, p)
		}
	}
	return nil
}

// msFlag is a duration given in milliseconds, as etcd's interval flags.
type msFlag struct{ d *time.Duration }

func (m msFlag) String() string {
	if m.d == nil {
		return "0"
	}
	return fmt.Sprint(m.d.Milliseconds())
}
func (m msFlag) Set(s string) error {
	var n uint64
	if _, err := fmt.Sscan(s, &n); err != nil {
		return fmt.Errorf("%q is not a number of milliseconds", s)
	}
	*m.d = time.Duration(n) * time.Millisecond
	return nil
}

// flags binds etcd's flag names to a server.Config.
type flags struct {
	fs                *flag.FlagSet
	cfg               server.Config
	logLevel          string
	enginePreset      string
	engineOptionsFile string
	engineOverrides   string

	// Set by config.go and logging.go.
	log               logFlags
	configFile        string   // --config-file
	engineOptionsText string   // the config file's engine-options block
	warnings          []string // about ignored flags, env and keys; logged at start
}

func newFlags(name string) *flags {
	f := &flags{fs: flag.NewFlagSet(name, flag.ContinueOnError), cfg: server.DefaultConfig()}
	c := &f.cfg
	fs := f.fs
	fs.StringVar(&c.Name, "name", c.Name, "Human-readable name for this member.")
	fs.StringVar(&c.DataDir, "data-dir", "", "Path to the data directory (default \"${name}.etcd\").")
	fs.Var((*urlsFlag)(&c.ListenClientURLs), "listen-client-urls", "List of URLs to listen on for client traffic.")
	fs.Var((*urlsFlag)(&c.AdvertiseClientURLs), "advertise-client-urls", "List of this member's client URLs to advertise to the rest of the cluster.")
	fs.Var((*urlsFlag)(&c.ListenPeerURLs), "listen-peer-urls", "List of URLs to listen on for peer traffic.")
	fs.Var((*urlsFlag)(&c.InitialAdvertisePeerURLs), "initial-advertise-peer-urls", "List of this member's peer URLs to advertise to the rest of the cluster.")
	fs.StringVar(&c.InitialCluster, "initial-cluster", "", "Initial cluster configuration for bootstrapping (default \"${name}=${initial-advertise-peer-urls}\").")
	fs.StringVar(&c.InitialClusterState, "initial-cluster-state", c.InitialClusterState, "Initial cluster state ('new' or 'existing').")
	fs.StringVar(&c.InitialClusterToken, "initial-cluster-token", c.InitialClusterToken, "Initial cluster token for the cluster during bootstrap.")
	fs.Uint64Var(&c.SnapshotCount, "snapshot-count", c.SnapshotCount, "Number of applied entries after which the raft log is truncated.")
	fs.Uint64Var(&c.SnapshotCatchUpEntries, "experimental-snapshot-catchup-entries", c.SnapshotCatchUpEntries, "Number of entries kept after a raft log truncation for slow followers to catch up from.")
	fs.Uint64Var(&c.SnapshotBytes, "snapshot-bytes", c.SnapshotBytes, "Bytes of applied entries after which the raft log is truncated, however few the entries (0: only --snapshot-count).")
	fs.Uint64Var(&c.SnapshotCatchUpBytes, "snapshot-catchup-bytes", c.SnapshotCatchUpBytes, "Bytes of entries kept after a raft log truncation at most, though never less than about one second of entries (0: only --experimental-snapshot-catchup-entries).")
	fs.BoolVar(&c.ExperimentalPeerFaults, "experimental-peer-faults", false, "TEST ONLY: serve /debug/faults on the peer listener to inject network faults. Never enable in production.")
	fs.DurationVar(&c.LeaseCheckpointInterval, "experimental-lease-checkpoint-interval", c.LeaseCheckpointInterval, "How often the leader checkpoints remaining lease TTLs through raft.")
	fs.DurationVar(&c.LeaseCheckInterval, "lease-check-interval", c.LeaseCheckInterval, "How often the leader looks for expired leases.")
	fs.IntVar(&c.MaxLeases, "max-leases", c.MaxLeases, "Maximum number of leases; granting more fails.")
	fs.IntVar(&c.CompactionBatchLimit, "compaction-batch-limit", c.CompactionBatchLimit, "Maximum revisions deleted in each compaction batch.")
	fs.IntVar(&c.CompactionBatchLimit, "experimental-compaction-batch-limit", c.CompactionBatchLimit, "Deprecated alias of --compaction-batch-limit (etcd 3.6).")
	fs.DurationVar(&c.CompactionSleepInterval, "compaction-sleep-interval", c.CompactionSleepInterval, "Least sleep interval between compaction batches.")
	fs.DurationVar(&c.CompactionSleepInterval, "experimental-compaction-sleep-interval", c.CompactionSleepInterval, "Deprecated alias of --compaction-sleep-interval (etcd 3.6).")
	fs.IntVar(&c.CompactionBusyPercent, "compaction-busy-percent", c.CompactionBusyPercent, "Largest share of time, in percent, that compaction batches take while the member serves requests: the sleep after a batch grows with the batch's duration (100: only --compaction-sleep-interval; an idle member sleeps only --compaction-sleep-interval).")
	fs.Int64Var(&c.LatestCacheBytes, "latest-cache-bytes", c.LatestCacheBytes, "Bytes of the apply's cache of the latest records it wrote, which spares a put of a recently written key the engine search for the version it replaces; 0 disables it.")
	fs.IntVar(&c.CountIndexBucketKeys, "count-index-bucket-keys", c.CountIndexBucketKeys, "Live keys per bucket of the in-memory count index that makes the count of a large range (every page of a Kubernetes list) cost about two buckets' walk; -1 disables it.")
	fs.IntVar(&c.SnapshotChunkBytes, "snapshot-chunk-bytes", c.SnapshotChunkBytes, "Size of the chunks a snapshot is streamed to a follower in.")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", c.RequestTimeout, "How long a write waits to be committed and applied.")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "How long SIGTERM waits for in-flight requests before closing connections.")
	fs.Var(msFlag{&c.HeartbeatInterval}, "heartbeat-interval", "Time (in milliseconds) of a heartbeat interval.")
	fs.Var(msFlag{&c.ElectionTimeout}, "election-timeout", "Time (in milliseconds) for an election to timeout.")
	fs.Int64Var(&c.QuotaBackendBytes, "quota-backend-bytes", c.QuotaBackendBytes, "Raise alarms when the engine's size exceeds the given quota. 0 means use the default quota.")
	fs.Int64Var(&c.DiskReserveBytes, "disk-reserve-bytes", c.DiskReserveBytes, "Raise the NOSPACE alarm when the data directory's filesystem has less free space than this. 0 means the default, negative disables.")
	fs.IntVar(&c.MaxRequestBytes, "max-request-bytes", c.MaxRequestBytes, "Maximum client request size in bytes the server will accept.")
	fs.IntVar(&c.MaxTxnOps, "max-txn-ops", c.MaxTxnOps, "Maximum number of operations permitted in a transaction.")
	fs.Var(uint32Flag{&c.MaxConcurrentStreams}, "max-concurrent-streams", "Maximum concurrent streams that each client can open at a time.")
	fs.StringVar(&c.AutoCompactionMode, "auto-compaction-mode", c.AutoCompactionMode, "Interpret 'auto-compaction-retention' one of: periodic|revision.")
	fs.StringVar(&c.AutoCompactionRetention, "auto-compaction-retention", c.AutoCompactionRetention, "Auto compaction retention (0 means disable).")
	fs.StringVar(&f.logLevel, "log-level", "info", "Configures log level. Only supports debug, info, warn, error, panic, or fatal.")
	fs.StringVar(&f.enginePreset, "engine-preset", "default", "RocksDB option preset: "+strings.Join(tuning.PresetNames(), ", ")+".")
	fs.StringVar(&f.engineOptionsFile, "engine-options-file", "", "RocksDB options file (the format 'metastore config dump' writes), applied over the preset.")
	fs.StringVar(&f.engineOverrides, "engine-option", "", "Comma-separated key=value RocksDB option overrides, applied last.")
	fs.StringVar(&c.AuthToken, "auth-token", c.AuthToken, "Specify auth token specific options.")
	fs.Var(secondsFlag{&c.AuthTokenTTL}, "auth-token-ttl", "The lifetime in seconds of the auth token.")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", c.BcryptCost, "Specify bcrypt algorithm cost factor for auth password hashing.")
	fs.StringVar(&c.ClientTLS.CertFile, "cert-file", "", "Path to the client server TLS cert file.")
	fs.StringVar(&c.ClientTLS.KeyFile, "key-file", "", "Path to the client server TLS key file.")
	fs.BoolVar(&c.ClientTLS.ClientCertAuth, "client-cert-auth", false, "Enable client cert authentication.")
	fs.StringVar(&c.ClientTLS.TrustedCAFile, "trusted-ca-file", "", "Path to the client server TLS trusted CA cert file.")
	fs.BoolVar(&c.ClientTLS.AutoTLS, "auto-tls", false, "Client TLS using generated certificates.")
	fs.StringVar(&c.PeerTLS.CertFile, "peer-cert-file", "", "Path to the peer server TLS cert file.")
	fs.StringVar(&c.PeerTLS.KeyFile, "peer-key-file", "", "Path to the peer server TLS key file.")
	fs.BoolVar(&c.PeerTLS.ClientCertAuth, "peer-client-cert-auth", false, "Enable peer client cert authentication.")
	fs.StringVar(&c.PeerTLS.TrustedCAFile, "peer-trusted-ca-file", "", "Path to the peer server TLS trusted CA file.")
	fs.BoolVar(&c.PeerTLS.AutoTLS, "peer-auto-tls", false, "Peer TLS using generated certificates.")
	fs.Var((*urlsFlag)(&c.CipherSuites), "cipher-suites", "Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go).")
	fs.StringVar(&c.TLSMinVersion, "tls-min-version", "TLS1.2", "Minimum TLS version supported by etcd. Possible values: TLS1.2, TLS1.3.")
	f.registerServerFlags() // config.go
	return f
}

// secondsFlag is a duration given in whole seconds (--auth-token-ttl).
type secondsFlag struct{ d *time.Duration }

func (s secondsFlag) String() string {
	if s.d == nil {
		return "0"
	}
	return fmt.Sprint(int64(*s.d / time.Second))
}

func (s secondsFlag) Set(v string) error {
	var n uint
	if _, err := fmt.Sscan(v, &n); err != nil {
		return fmt.Errorf("%q is not a number of seconds", v)
	}
	*s.d = time.Duration(n) * time.Second
	return nil
}

// parse parses args and builds the final configuration.
func (f *flags) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", f.fs.Arg(0))
	}
	// A config file replaces every flag and the environment, as etcd's.
	cf, err := f.applySources() // config.go
	if cf != nil {
		orig := f
		defer func() { *orig = *cf }()
		f = cf
	}
	if err != nil {
		return err
	}
	eng, err := tuning.Preset(f.enginePreset)
	if err != nil {
		return fmt.Errorf("--engine-preset: %w", err)
	}
	if f.engineOptionsFile != "" {
		text, err := os.ReadFile(f.engineOptionsFile)
		if err != nil {
			return fmt.Errorf("--engine-options-file: %w", err)
		}
		if eng, err = tuning.ParseOver(eng, string(text)); err != nil {
			return fmt.Errorf("--engine-options-file %s: %w", f.engineOptionsFile, err)
		}
	}
	if f.engineOverrides != "" {
		if eng, err = tuning.ApplyOverrides(eng, strings.Split(f.engineOverrides, ",")); err != nil {
			return fmt.Errorf("--engine-option: %w", err)
		}
	}
	if f.engineOptionsText != "" {
		if eng, err = tuning.ParseOver(eng, f.engineOptionsText); err != nil {
			return fmt.Errorf("%s: engine-options: %w", f.configFile, err)
		}
	}
	f.cfg.Engine = eng
	lg, err := f.log.build(f.logLevel) // logging.go
	if err != nil {
		return err
	}
	f.cfg.Logger = lg
	return f.cfg.Validate()
}

// cpuProfileEnv names a file to write a CPU profile of the whole run into
// (for profile-driven work on a member outside tests; pprof over HTTP is
// --enable-pprof).
const cpuProfileEnv = "METASTORE_CPU_PROFILE"

func runServer(args []string) int {
	if path := os.Getenv(cpuProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "metastore: %s: %v\n", cpuProfileEnv, err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "metastore: %s: %v\n", cpuProfileEnv, err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	f := newFlags("metastore")
	if err := f.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "metastore: %v\n", err)
		return exitUsage
	}
	lg := f.cfg.Logger
	for _, w := range f.warnings {
		lg.Warn(w)
	}
	srv, err := server.New(f.cfg)
	if err != nil {
		lg.Error("cannot start member", zap.Error(err))
		return 1
	}
	if err := srv.Serve(); err != nil {
		lg.Error("cannot serve", zap.Error(err))
		srv.Stop()
		return 1
	}
	lg.Info("serving client requests", zap.Strings("listen-client-urls", f.cfg.ListenClientURLs))

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		lg.Info("received signal; shutting down", zap.String("signal", s.String()))
		srv.Stop()
	case <-srv.Done():
	}
	lg.Sync()
	return 0
}

func runSubcommand(name string, args []string) int {
	switch name {
	case "snapshot":
		return runSnapshot(args)
	case "config":
		return runConfig(args)
	case "export":
		return runExport(args)
	case "import":
		return runImport(args)
	case "check":
		return runCheck(args)
	case "compact":
		return runCompact(args) // tools.go
	case "status":
		return runStatus(args) // tools.go
	case "version":
		fmt.Printf("metastore (etcd API %s)\n", server.Version)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "metastore: unknown command %q (commands: snapshot, export, import, check, compact, status, config, version; flags start the server)\n", name)
		return exitUsage
	}
}
