package server

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/raftlog"
)

// The metrics keep etcd v3.6's names, help texts, types, labels and
// buckets (server/etcdserver/metrics.go, server/storage/mvcc/metrics.go,
// server/storage/backend/metrics.go, server/storage/wal/metrics.go,
// server/etcdserver/api/rafthttp/metrics.go,
// server/etcdserver/api/v3rpc/metrics.go, go-grpc-middleware's
// providers/prometheus), so that etcd's dashboards and alerts work
// unchanged. MetaStore's own metrics start with metastore_. docs/METRICS.md
// lists every one of them and says where a figure differs in meaning.
//
// Every Server has its own registry: tests run several in one process.
// Gauges are read at scrape time from atomics, or from samples that the
// observer loop takes (observeLoop), never from the engine in the HTTP
// handler: scrapes stay cheap and never touch storage that Stop closes.

// Sampling bounds of the observer loop.
const (
	// observeInterval is how often the observer loop samples the engine's
	// statistics and re-evaluates readiness.
	observeInterval = time.Second
	// peerRTTSampleInterval is how often each peer's round-trip time is
	// observed into etcd_network_peer_round_trip_time_seconds, etcd's
	// prober period (statusMonitoringInterval).
	peerRTTSampleInterval = 30 * time.Second
	// minCountInterval is the least time between two counts of the keys
	// and leases (etcd_debugging_mvcc_keys_total, metastore_leases). A
	// count scans the key space, so the next one waits at least
	// countCostFactor times as long as the last took: counting costs at
	// most 1/countCostFactor of one core.
	minCountInterval = 30 * time.Second
	countCostFactor  = 20
)

// Values of --metrics, as etcd's.
const (
	MetricsBasic     = "basic"
	MetricsExtensive = "extensive"
)

// serverMetrics are one member's metrics. The fields that code paths
// update directly are here; the rest are read at scrape time.
type serverMetrics struct {
	reg  *prometheus.Registry
	grpc *grpcServerMetrics // grpcmetrics.go

	leaderChanges         prometheus.Counter
	heartbeatSendFailures prometheus.Counter
	proposalsPending      prometheus.Gauge
	proposalsFailed       prometheus.Counter
	slowApplies           prometheus.Counter
	walFsyncSec           prometheus.Histogram
	backendCommitSec      prometheus.Histogram
	rangeCounter          prometheus.Counter
	putCounter            prometheus.Counter
	deleteCounter         prometheus.Counter
	txnCounter            prometheus.Counter
	clientSentBytes       prometheus.Counter
	clientReceivedBytes   prometheus.Counter
	peerRTTSec            *prometheus.HistogramVec
	health                *healthMetrics

	// Samples taken by the observer loop.
	engineStats atomic.Pointer[engine.Stats]
	keys        atomic.Int64
	leases      atomic.Int64
}

func newServerMetrics(s *Server) *serverMetrics {
	m := &serverMetrics{reg: prometheus.NewRegistry()}
	m.grpc = newGRPCServerMetrics(s.cfg.Metrics == MetricsExtensive)

	counter := func(ns, sub, name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	gaugeFunc := func(ns, sub, name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help}, f))
	}
	node := func() *raftlog.Node { return s.raftNode.Load() }

	// etcd server/etcdserver/metrics.go
	gaugeFunc("etcd", "server", "has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", func() float64 {
		if n := node(); n != nil && n.Leader() != 0 {
			return 1
		}
		return 0
	})
	gaugeFunc("etcd", "server", "is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", func() float64 {
		if n := node(); n != nil && n.IsLeader() {
			return 1
		}
		return 0
	})
	m.leaderChanges = counter("etcd", "server", "leader_changes_seen_total", "The number of leader changes seen.")
	m.heartbeatSendFailures = counter("etcd", "server", "heartbeat_send_failures_total", "The total number of leader heartbeat send failures (likely overloaded from slow disk).")
	gaugeFunc("etcd", "server", "proposals_committed_total", "The total number of consensus proposals committed.", func() float64 {
		if n := node(); n != nil {
			return float64(n.Metrics().CommittedIndex)
		}
		return 0
	})
	gaugeFunc("etcd", "server", "proposals_applied_total", "The total number of consensus proposals applied.", func() float64 {
		return float64(s.applied.Load())
	})
	m.proposalsPending = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: "proposals_pending", Help: "The current number of pending proposals to commit."})
	m.reg.MustRegister(m.proposalsPending)
	m.proposalsFailed = counter("etcd", "server", "proposals_failed_total", "The total number of failed proposals seen.")
	m.slowApplies = counter("etcd", "server", "slow_apply_total", "The total number of slow apply requests (likely overloaded from slow disk).")
	gaugeFunc("etcd", "server", "quota_backend_bytes", "Current backend storage quota size in bytes.", func() float64 {
		return float64(s.cfg.QuotaBackendBytes)
	})
	m.info("version", "Which version is running. 1 for 'server_version' label with current version.", "server_version", Version)
	m.info("go_version", "Which Go version server is running with. 1 for 'server_go_version' label with current version.", "server_go_version", runtime.Version())

	// etcd server/storage/wal and backend: MetaStore's WAL is the raft log
	// in the engine, its backend commit the engine batch of one applied
	// request.
	m.walFsyncSec = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "disk", Name: "wal_fsync_duration_seconds",
		Help:    "The latency distributions of fsync called by WAL.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	m.backendCommitSec = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "disk", Name: "backend_commit_duration_seconds",
		Help:    "The latency distributions of commit called by backend.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	m.reg.MustRegister(m.walFsyncSec, m.backendCommitSec)

	// etcd server/storage/mvcc/metrics.go
	m.rangeCounter = counter("etcd", "mvcc", "range_total", "Total number of ranges seen by this member.")
	m.putCounter = counter("etcd", "mvcc", "put_total", "Total number of puts seen by this member.")
	m.deleteCounter = counter("etcd", "mvcc", "delete_total", "Total number of deletes seen by this member.")
	m.txnCounter = counter("etcd", "mvcc", "txn_total", "Total number of txns seen by this member.")
	gaugeFunc("etcd", "mvcc", "db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.", func() float64 {
		return float64(s.alarms.dbSizeBytes.Load())
	})
	gaugeFunc("etcd", "mvcc", "db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.", func() float64 {
		return float64(s.alarms.dbSizeInUseBytes.Load())
	})
	gaugeFunc("etcd_debugging", "mvcc", "keys_total", "Total number of keys.", func() float64 { return float64(m.keys.Load()) })
	gaugeFunc("etcd_debugging", "mvcc", "current_revision", "The current revision of store.", func() float64 {
		if !s.obs.enter() {
			return 0
		}
		defer s.obs.leave()
		return float64(s.kv.Rev())
	})
	gaugeFunc("etcd_debugging", "mvcc", "compact_revision", "The revision of the last compaction in store.", func() float64 {
		return float64(m.compactedRev(s))
	})
	gaugeFunc("etcd_debugging", "mvcc", "watch_stream_total", "Total number of watch streams.", func() float64 {
		return float64(m.watchStats(s).Streams)
	})
	gaugeFunc("etcd_debugging", "mvcc", "watcher_total", "Total number of watchers.", func() float64 {
		return float64(m.watchStats(s).Watchers)
	})
	gaugeFunc("etcd_debugging", "mvcc", "slow_watcher_total", "Total number of unsynced slow watchers.", func() float64 {
		return float64(m.watchStats(s).SlowWatchers)
	})

	// etcd server/etcdserver/api/v3rpc/metrics.go
	m.clientSentBytes = counter("etcd", "network", "client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients.")
	m.clientReceivedBytes = counter("etcd", "network", "client_grpc_received_bytes_total", "The total number of bytes received from grpc clients.")

	// etcd server/etcdserver/api/rafthttp/metrics.go
	m.peerRTTSec = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "network", Name: "peer_round_trip_time_seconds",
		Help:    "Round-Trip-Time histogram between peers",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"To"})
	m.reg.MustRegister(m.peerRTTSec, peerCollector{s})

	m.health = newHealthMetrics(m.reg)

	// MetaStore's own.
	m.reg.MustRegister(engineCollector{m})
	gaugeFunc("metastore", "mvcc", "compacted_revision", "The revision of the last compaction in the store (-1 before any), as etcd_debugging_mvcc_compact_revision.", func() float64 {
		return float64(m.compactedRev(s))
	})
	gaugeFunc("metastore", "", "watchers", "Live watchers on this member.", func() float64 {
		return float64(m.watchStats(s).Watchers)
	})
	gaugeFunc("metastore", "", "slow_watchers", "Watchers catching up from history (unsynced) on this member.", func() float64 {
		return float64(m.watchStats(s).SlowWatchers)
	})
	gaugeFunc("metastore", "", "leases", "Leases in the store, counted every "+minCountInterval.String()+" or less often.", func() float64 {
		return float64(m.leases.Load())
	})

	m.reg.MustRegister(m.grpc,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector())
	return m
}

// info registers an etcd-style info gauge: value 1 with one label.
func (m *serverMetrics) info(name, help, label, value string) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "etcd", Subsystem: "server", Name: name, Help: help}, []string{label})
	g.WithLabelValues(value).Set(1)
	m.reg.MustRegister(g)
}

// registerMemberID exports etcd_server_id, once the member ID is known.
func (m *serverMetrics) registerMemberID(id uint64) {
	m.info("id", "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.", "server_id", fmt.Sprintf("%x", id))
}

func (m *serverMetrics) compactedRev(s *Server) int64 {
	if !s.obs.enter() {
		return 0
	}
	defer s.obs.leave()
	return s.kv.CompactedRev()
}

// watchStats reads the watch server's counts; zero before Serve built it.
func (m *serverMetrics) watchStats(s *Server) (st watchStats) {
	if !s.obs.enter() {
		return st
	}
	defer s.obs.leave()
	if s.watchSrv != nil {
		w := s.watchSrv.Stats()
		st = watchStats{Streams: w.Streams, Watchers: w.Watchers, SlowWatchers: w.SlowWatchers}
	}
	return st
}

type watchStats struct{ Streams, Watchers, SlowWatchers int }

// engineCollector exports the engine statistics the observer loop sampled.
type engineCollector struct{ m *serverMetrics }

var (
	descBlockCacheHitRatio = prometheus.NewDesc("metastore_engine_block_cache_hit_ratio",
		"Block cache hits / (hits + misses) since start; 0 before any lookup or with engine statistics off.", nil, nil)
	descMemtableBytes = prometheus.NewDesc("metastore_engine_memtable_bytes",
		"Memory held by all memtables, over all column families.", nil, nil)
	descPendingCompactionBytes = prometheus.NewDesc("metastore_engine_pending_compaction_bytes",
		"RocksDB's estimate of the bytes compactions must rewrite to bring every level under its target.", nil, nil)
	descStallMicros = prometheus.NewDesc("metastore_engine_stall_micros_total",
		"Microseconds writes spent stalled by RocksDB (0 with engine statistics off).", nil, nil)
	descL0Files = prometheus.NewDesc("metastore_engine_l0_files",
		"Files in level 0, over all column families.", nil, nil)
	descCompactionReadBytes = prometheus.NewDesc("metastore_engine_compaction_read_bytes_total",
		"Bytes read by compactions (0 with engine statistics off).", nil, nil)
	descCompactionWriteBytes = prometheus.NewDesc("metastore_engine_compaction_write_bytes_total",
		"Bytes written by compactions (0 with engine statistics off).", nil, nil)
)

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBlockCacheHitRatio
	ch <- descMemtableBytes
	ch <- descPendingCompactionBytes
	ch <- descStallMicros
	ch <- descL0Files
	ch <- descCompactionReadBytes
	ch <- descCompactionWriteBytes
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.m.engineStats.Load()
	if st == nil {
		st = &engine.Stats{}
	}
	ch <- prometheus.MustNewConstMetric(descBlockCacheHitRatio, prometheus.GaugeValue, st.BlockCacheHitRate())
	ch <- prometheus.MustNewConstMetric(descMemtableBytes, prometheus.GaugeValue, float64(st.MemtableBytes))
	ch <- prometheus.MustNewConstMetric(descPendingCompactionBytes, prometheus.GaugeValue, float64(st.PendingCompactionBytes))
	ch <- prometheus.MustNewConstMetric(descStallMicros, prometheus.CounterValue, float64(st.StallMicros))
	ch <- prometheus.MustNewConstMetric(descL0Files, prometheus.GaugeValue, float64(st.L0Files))
	ch <- prometheus.MustNewConstMetric(descCompactionReadBytes, prometheus.CounterValue, float64(st.CompactReadBytes))
	ch <- prometheus.MustNewConstMetric(descCompactionWriteBytes, prometheus.CounterValue, float64(st.CompactWriteBytes))
}

// peerCollector exports the transport's per-peer counters at scrape time,
// under etcd's rafthttp names and labels (peer IDs in hex, as etcd's
// types.ID prints them).
type peerCollector struct{ s *Server }

var (
	descActivePeers = prometheus.NewDesc("etcd_network_active_peers",
		"The current number of active peer connections.", []string{"Local", "Remote"}, nil)
	descPeerSentBytes = prometheus.NewDesc("etcd_network_peer_sent_bytes_total",
		"The total number of bytes sent to peers.", []string{"To"}, nil)
	descPeerReceivedBytes = prometheus.NewDesc("etcd_network_peer_received_bytes_total",
		"The total number of bytes received from peers.", []string{"From"}, nil)
	descPeerSentFailures = prometheus.NewDesc("etcd_network_peer_sent_failures_total",
		"The total number of send failures from peers.", []string{"To"}, nil)
	descSnapshotSend = prometheus.NewDesc("etcd_network_snapshot_send_success",
		"Total number of successful snapshot sends", []string{"To"}, nil)
	descSnapshotSendFailures = prometheus.NewDesc("etcd_network_snapshot_send_failures",
		"Total number of snapshot send failures", []string{"To"}, nil)
	descSnapshotReceive = prometheus.NewDesc("etcd_network_snapshot_receive_success",
		"Total number of successful snapshot receives", []string{"From"}, nil)
)

func (c peerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descActivePeers
	ch <- descPeerSentBytes
	ch <- descPeerReceivedBytes
	ch <- descPeerSentFailures
	ch <- descSnapshotSend
	ch <- descSnapshotSendFailures
	ch <- descSnapshotReceive
}

func (c peerCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.tr == nil {
		return
	}
	local := fmt.Sprintf("%x", c.s.memberID)
	for id, st := range c.s.tr.Stats() {
		peer := fmt.Sprintf("%x", id)
		active := 0.0
		if !st.ActiveSince.IsZero() {
			active = 1
		}
		ch <- prometheus.MustNewConstMetric(descActivePeers, prometheus.GaugeValue, active, local, peer)
		ch <- prometheus.MustNewConstMetric(descPeerSentBytes, prometheus.CounterValue, float64(st.BytesSent), peer)
		ch <- prometheus.MustNewConstMetric(descPeerReceivedBytes, prometheus.CounterValue, float64(st.BytesReceived), peer)
		ch <- prometheus.MustNewConstMetric(descPeerSentFailures, prometheus.CounterValue, float64(st.MsgsDropped), peer)
		ch <- prometheus.MustNewConstMetric(descSnapshotSend, prometheus.CounterValue, float64(st.SnapshotsSent), peer)
		ch <- prometheus.MustNewConstMetric(descSnapshotSendFailures, prometheus.CounterValue, float64(st.SnapshotsFailed), peer)
		ch <- prometheus.MustNewConstMetric(descSnapshotReceive, prometheus.CounterValue, float64(st.SnapshotsReceived), peer)
	}
}

// observeWALFsync is raftlog's StorageConfig.OnSyncedWrite.
func (m *serverMetrics) observeWALFsync(took time.Duration) {
	m.walFsyncSec.Observe(took.Seconds())
}

// proposalStarted counts one proposal as pending until proposalDone runs
// with its outcome. A proposal fails, as in etcd, when raft refuses it or
// it times out or is canceled before it is applied; an error the apply
// itself returned (a compacted revision, a missing lease) is a success.
//
//	s.obs.metrics.proposalStarted()
//	defer s.obs.metrics.proposalDone(&err)
func (m *serverMetrics) proposalStarted() { m.proposalsPending.Inc() }

// proposalDone ends what proposalStarted began.
func (m *serverMetrics) proposalDone(err *error) {
	m.proposalsPending.Dec()
	if *err != nil && isProposalFailure(*err) {
		m.proposalsFailed.Inc()
	}
}

// proposalFailures are the errors of a proposal that raft refused or that
// ended before it was applied.
var proposalFailures = []error{
	context.DeadlineExceeded, context.Canceled,
	raftlog.ErrTooManyRequests, raftlog.ErrStopped, raftlog.ErrNoLeader,
	raftlog.ErrLeaderChanged, raftlog.ErrTimeout, raftlog.ErrProposalDropped,
}

func isProposalFailure(err error) bool {
	for _, target := range proposalFailures {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// applyObserved applies r as applyRequest does, timing it for the backend
// commit histogram, counting its operations as etcd's mvcc counts them,
// and logging it when it took longer than WarningApplyDuration.
func (s *Server) applyObserved(idx uint64, r *pb.InternalRaftRequest) result {
	m := s.obs.metrics
	start := time.Now()
	res := s.applyRequest(idx, r)
	took := time.Since(start)
	switch {
	case r.Put != nil:
		m.putCounter.Inc()
		m.backendCommitSec.Observe(took.Seconds())
	case r.DeleteRange != nil:
		m.deleteCounter.Inc()
		m.backendCommitSec.Observe(took.Seconds())
	case r.Txn != nil:
		tr, _ := res.resp.(*pb.TxnResponse)
		m.countTxn(r.Txn, tr)
		m.backendCommitSec.Observe(took.Seconds())
	}
	if took > s.cfg.WarningApplyDuration {
		s.warnOfExpensiveRequest(took, "", &pb.InternalRaftStringer{Request: r}, responseSize(res.resp), res.err)
	}
	return res
}

// countTxn counts a txn's operations as etcd's metricsTxnWrite does: the
// ranges (compares included: etcd evaluates them as ranges), puts and
// deletes of the branches taken, nested txns included, and the txn itself
// when it held more than one. etcd counts the compare phase and the
// operations in two mvcc txns, so its txn_total can run slightly higher.
func (m *serverMetrics) countTxn(r *pb.TxnRequest, resp *pb.TxnResponse) {
	if resp == nil {
		return
	}
	var ranges, puts, deletes float64
	var walk func(r *pb.TxnRequest, resp *pb.TxnResponse)
	walk = func(r *pb.TxnRequest, resp *pb.TxnResponse) {
		ranges += float64(len(r.Compare))
		ops := r.Failure
		if resp.Succeeded {
			ops = r.Success
		}
		for i, op := range ops {
			switch {
			case op.GetRequestRange() != nil:
				ranges++
			case op.GetRequestPut() != nil:
				puts++
			case op.GetRequestDeleteRange() != nil:
				deletes++
			case op.GetRequestTxn() != nil && i < len(resp.Responses):
				if nested := resp.Responses[i].GetResponseTxn(); nested != nil {
					walk(op.GetRequestTxn(), nested)
				}
			}
		}
	}
	walk(r, resp)
	if ranges+puts+deletes > 1 {
		m.txnCounter.Inc()
	}
	m.rangeCounter.Add(ranges)
	m.putCounter.Add(puts)
	m.deleteCounter.Add(deletes)
}

// warnOfExpensiveRequest logs a slow request with etcd's message and fields
// (etcdserver/txn/util.go warnOfExpensiveGenericRequest) and counts it in
// slow_apply_total.
func (s *Server) warnOfExpensiveRequest(took time.Duration, prefix string, req fmt.Stringer, resp string, err error) {
	s.lg.Warn("apply request took too long",
		zap.Duration("took", took),
		zap.Duration("expected-duration", s.cfg.WarningApplyDuration),
		zap.String("prefix", prefix),
		zap.String("request", req.String()),
		zap.String("response", resp),
		zap.Error(err),
	)
	s.obs.metrics.slowApplies.Inc()
}

// responseSize renders an apply response for the slow request log as etcd
// does ("size:N"), or "" when there is none.
func responseSize(resp any) string {
	r, ok := resp.(interface{ Size() int })
	if !ok {
		return ""
	}
	if v := reflect.ValueOf(r); v.Kind() == reflect.Pointer && v.IsNil() {
		return ""
	}
	return fmt.Sprintf("size:%d", r.Size())
}

// metricsServerOptions are the gRPC server options of the metrics: the
// client byte counters (counted by the codec, as etcd's codec counts them:
// codec.go). grpc.go appends them to its own; its interceptors keep the
// grpc_server_* metrics and observe reads (observeRead).
func (s *Server) metricsServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(newClientCodec(s.obs.metrics)),
	}
}

// isObservedRead reports whether req is a read-only request observeRead
// counts and times: a range, or a txn that writes nothing.
func isObservedRead(req any) bool {
	switch r := req.(type) {
	case *pb.RangeRequest:
		return true
	case *pb.TxnRequest:
		return isTxnReadOnly(r)
	}
	return false
}

// observeRead counts ranges and logs slow read-only requests with etcd's
// "read-only range " and "read-only txn " prefixes (etcd's v3_server.go
// Range and Txn) once they were served (took). Writes are counted and
// logged where they are applied (applyObserved), on every member, as in
// etcd.
func (s *Server) observeRead(req, resp any, err error, took time.Duration) {
	switch r := req.(type) {
	case *pb.RangeRequest:
		s.obs.metrics.rangeCounter.Inc()
		if took > s.cfg.WarningApplyDuration {
			var text string
			if rr, _ := resp.(*pb.RangeResponse); rr != nil {
				text = fmt.Sprintf("range_response_count:%d size:%d", len(rr.Kvs), rr.Size())
			}
			s.warnOfExpensiveRequest(took, "read-only range ", r, text, err)
		}
	case *pb.TxnRequest:
		tr, _ := resp.(*pb.TxnResponse)
		s.obs.metrics.countTxn(r, tr)
		if took > s.cfg.WarningApplyDuration {
			var text string
			if tr != nil {
				var parts []string
				for _, op := range tr.Responses {
					if rr := op.GetResponseRange(); rr != nil {
						parts = append(parts, fmt.Sprintf("range_response_count:%d", len(rr.Kvs)))
					}
				}
				text = fmt.Sprintf("responses:<%s> size:%d", strings.Join(parts, " "), tr.Size())
			}
			s.warnOfExpensiveRequest(took, "read-only txn ", pb.NewLoggableTxnRequest(r), text, err)
		}
	}
}

// countKeys counts the live keys (etcd_debugging_mvcc_keys_total): one
// scan of the latest versions.
func (s *Server) countKeys(ctx context.Context) (int64, error) {
	resp, err := s.kv.Range(ctx, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true})
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}
