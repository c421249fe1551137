package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/engine/failpoint"
	"github.com/metastore/metastore/mvcc"
	"github.com/metastore/metastore/raftlog"
	"github.com/metastore/metastore/raftlog/transport"
	"github.com/metastore/metastore/server/auth"
	"github.com/metastore/metastore/server/watch"
	"github.com/metastore/metastore/tuning"
)

// Version is the etcd API version MetaStore serves and reports in Status.
const Version = "3.6.16"

// Server is one running member.
type Server struct {
	// applyAnswers is Apply's reusable list of answers (apply goroutine only).
	applyAnswers []pendingAnswer

	cfg Config
	lg  *zap.Logger

	memberID  uint64
	clusterID uint64
	cluster   *cluster

	db      *engine.DB // the replicated state (mvcc, membership, alarms)
	raftDB  *engine.DB // this member's raft log, in an engine of its own
	kv      *mvcc.Store
	rstore  *raftlog.Storage
	node    *raftlog.Node
	tr      *transport.Transport
	waits   *waitRegistry
	waiters sync.Pool // idle *waiter (wait.go)
	ids     *idGenerator
	lessor  *lessor
	alarms  *alarmStore
	applied atomic.Uint64
	// appliedBytes sums the data of the entries applied since start, for
	// the raft log truncation's byte bounds.
	appliedBytes atomic.Uint64

	authStore *auth.Store // users, roles, tokens (auth_service.go, auth_check.go)
	tlsc      tlsConfigs  // nil configs: cleartext (tls.go)

	stagedSnapshot atomic.Pointer[stagedSnapshot] // received, not yet installed
	peerConns      memberConns                    // client connections to other members
	selfClient     *clientv3.Client               // for the Lock and Election services
	watchSrv       *watch.Server
	// raftNode is node for the transport's goroutines, which may start
	// (conf changes replayed while the node starts) before node is set.
	raftNode atomic.Pointer[raftlog.Node]

	grpc        *grpc.Server
	clientLns   []net.Listener
	peerSrv     *http.Server
	peerLns     []net.Listener
	httpClients []*http.Server
	obs         *observability // metrics, health and the HTTP side of the client listeners (http.go)

	draining chan struct{}   // closed when Stop begins
	ctx      context.Context // canceled when the server stops
	cancel   context.CancelFunc
	stopOnce sync.Once
	done     chan struct{} // closed when Stop has finished
	wg       sync.WaitGroup
}

// memberDir is where a member keeps its state inside --data-dir, as etcd.
func memberDir(dataDir string) string { return filepath.Join(dataDir, "member") }

// raftEngineOptions are the options of the raft log's own engine. The log
// lives apart from the replicated state so that apply batches, which need
// no fsync, never queue in RocksDB's write path behind the log's fsyncs:
// the two have separate WALs. The log is written sequentially and read
// back soon, so it needs little cache.
func raftEngineOptions() tuning.Options {
	o := tuning.LowMemory()
	o.WriteBufferBytes = 32 << 20
	o.MaxWriteBufferNumber = 4
	o.Statistics = false
	// Every raft log write that matters is synced; nothing replays it.
	o.ManualWALFlush = false
	// The hard state and term runs (CFMeta) change with every Ready but
	// fill no memtable: bound the WALs they pin by forcing their flush.
	o.MaxTotalWALBytes = 64 << 20
	// Small files below L0, so a truncated log's files fall wholly below
	// the cut and are dropped whole (raftlog.Storage.DropTruncatedFiles).
	o.TargetFileSizeBaseBytes = 8 << 20
	return o
}

// New opens (or bootstraps) the member's state and starts raft; Serve
// starts answering clients.
func New(cfg Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, lg: cfg.Logger, waits: newWaitRegistry(), done: make(chan struct{}), draining: make(chan struct{})}
	s.obs = newObservability(s)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			s.closeStorage()
		}
	}()

	dir := memberDir(cfg.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if s.db, err = engine.Open(filepath.Join(dir, "engine"), cfg.Engine); err != nil {
		return nil, damagedEngineError("data engine", err) // walerror.go
	}
	mcfg := mvcc.Config{MaxLeases: cfg.MaxLeases, CompactionBatchLimitRevs: cfg.CompactionBatchLimit,
		CompactionBatchInterval: cfg.CompactionSleepInterval, CompactionBusyPercent: cfg.CompactionBusyPercent,
		CountIndexBucketKeys: cfg.CountIndexBucketKeys, LatestCacheBytes: cfg.LatestCacheBytes}
	if mcfg.LatestCacheBytes == 0 {
		mcfg.LatestCacheBytes = -1 // mvcc reads 0 as its default; the operator asked for none
	}
	if mcfg.CompactionBatchInterval == 0 {
		mcfg.CompactionBatchInterval = 1 // mvcc reads 0 as its default; the operator asked for no sleep
	}
	restoredDir, err := resumeRestore(s.db)
	if err != nil {
		return nil, err
	}
	if s.kv, err = mvcc.Open(s.db, mcfg, s.lg.Named("mvcc")); err != nil {
		return nil, err
	}
	if s.raftDB, err = engine.Open(filepath.Join(dir, "raft"), raftEngineOptions()); err != nil {
		return nil, damagedEngineError("raft log", err) // walerror.go
	}
	if s.rstore, err = raftlog.Open(s.raftDB, raftlog.StorageConfig{OnSyncedWrite: s.obs.metrics.observeWALFsync}); err != nil {
		return nil, err
	}
	s.applied.Store(s.kv.AppliedIndex())

	if err := s.setupTLS(); err != nil {
		return nil, err
	}
	s.peerConns.tls = s.tlsc.clientDial
	peers, err := s.loadOrBootstrapIdentity()
	if err != nil {
		return nil, err
	}
	s.ids = newIDGenerator(s.memberID, time.Now())
	s.alarms = newAlarmStore(s)
	if err := s.alarms.load(); err != nil {
		return nil, err
	}
	s.lessor = newLessor(s)
	if s.authStore, err = s.newAuthStore(); err != nil {
		return nil, err
	}
	if restoredDir != "" {
		if err := s.finishRestore(restoredDir); err != nil {
			return nil, err
		}
		s.lg.Warn("finished a snapshot install that a crash interrupted", zap.String("dir", restoredDir))
	}
	if err := checkEngineCoversLog(s.kv.AppliedIndex(), s.rstore); err != nil { // walerror.go
		return nil, err
	}

	tcfg := transport.Config{
		TLS:                s.tlsc.peer,
		LocalID:            s.memberID,
		ClusterID:          s.clusterID,
		SnapshotDir:        filepath.Join(dir, "snap"),
		SnapshotChunkBytes: cfg.SnapshotChunkBytes,
		IsRemoved:          s.cluster.IsRemoved,
		OnRemoved: func() {
			s.lg.Warn("a peer says this member was removed from the cluster; stopping")
			go s.Stop()
		},
	}
	if s.tr, err = transport.New(tcfg, (*raftHandler)(s), snapshotSource{s}, snapshotSink{s}, s.lg.Named("transport")); err != nil {
		return nil, err
	}
	ncfg := raftlog.Config{
		ID:                  s.memberID,
		TickInterval:        cfg.HeartbeatInterval,
		ElectionTicks:       int(cfg.ElectionTimeout / cfg.HeartbeatInterval),
		HeartbeatTicks:      1,
		PreVote:             true,
		CheckQuorum:         true,
		MaxPendingProposals: cfg.MaxPendingProposals,
	}
	if s.node, err = raftlog.StartNode(ncfg, s.rstore, s.tr, (*applier)(s), peers, s.lg.Named("raft")); err != nil {
		return nil, err
	}
	s.raftNode.Store(s.node)
	// Peers are added only now: the transport reports to the node.
	for _, m := range s.cluster.Members() {
		if m.ID != s.memberID {
			s.tr.AddPeer(m.ID, m.PeerURLs)
		}
	}
	s.lg.Info("member started",
		zap.String("name", cfg.Name),
		zap.String("member-id", fmt.Sprintf("%016x", s.memberID)),
		zap.String("cluster-id", fmt.Sprintf("%016x", s.clusterID)),
		zap.Int64("revision", s.kv.Rev()),
		zap.Uint64("applied-index", s.applied.Load()))
	return s, nil
}

// loadOrBootstrapIdentity reads the member and cluster IDs and the
// membership from the engine, or creates them on first start. It returns
// the raft peers to bootstrap with (nil on restart or when joining).
func (s *Server) loadOrBootstrapIdentity() ([]raftlog.Peer, error) {
	idb, found, err := s.db.Get(engine.CFMeta, []byte(metaLocalIDKey))
	if err != nil {
		return nil, err
	}
	if found {
		// Restart: everything comes from the engine.
		if len(idb) != 8 {
			return nil, fmt.Errorf("server: corrupt local member id record")
		}
		s.memberID = beUint64(idb)
		cid, ok, err := s.db.Get(engine.CFMeta, []byte(metaClusterIDKey))
		if err != nil || !ok || len(cid) != 8 {
			return nil, fmt.Errorf("server: cluster id missing from %s (err %v)", s.cfg.DataDir, err)
		}
		s.clusterID = beUint64(cid)
		s.cluster = newCluster(s.clusterID)
		if err := s.loadMembers(); err != nil {
			return nil, err
		}
		if s.cluster.IsRemoved(s.memberID) {
			return nil, errMemberRemoved
		}
		return nil, nil
	}

	initial, err := parseInitialCluster(s.cfg.InitialCluster, s.cfg.InitialClusterToken)
	if err != nil {
		return nil, err
	}
	var self *Member
	for _, m := range initial {
		if m.Name == s.cfg.Name {
			self = m
		}
	}
	if self == nil {
		return nil, fmt.Errorf("server: --initial-cluster does not name %q", s.cfg.Name)
	}
	// Client URLs are not part of the bootstrap entries, which every member
	// builds from --initial-cluster alone and must be identical everywhere;
	// each member publishes its own through raft once it runs.
	s.memberID = self.ID

	var peers []raftlog.Peer
	switch s.cfg.InitialClusterState {
	case "new":
		ids := make([]uint64, 0, len(initial))
		for _, m := range initial {
			ids = append(ids, m.ID)
		}
		s.clusterID = computeClusterID(ids)
		s.cluster = newCluster(s.clusterID)
		for _, m := range initial {
			s.cluster.setMember(m)
			peers = append(peers, raftlog.Peer{ID: m.ID, Context: encodeConfContext(0, m)})
		}
	case "existing":
		remote, cid, err := fetchClusterFromPeers(initial, s.memberID, s.cfg.RequestTimeout, s.tlsc.peer)
		if err != nil {
			return nil, err
		}
		s.clusterID = cid
		s.cluster = newCluster(cid)
		for _, m := range remote {
			s.cluster.setMember(m)
		}
		// MemberAdd mixed the time into the ID it assigned, so the ID
		// computed from --initial-cluster is not ours: find the member by
		// its peer URLs, as etcd's ValidateClusterAndAssignIDs does.
		added := memberByPeerURLs(remote, self.PeerURLs)
		if added == nil {
			return nil, fmt.Errorf("server: no member of the existing cluster has the peer URLs of %s (%s); add it with MemberAdd first", s.cfg.Name, strings.Join(self.PeerURLs, ","))
		}
		s.memberID = added.ID
	}
	// Persist identity before raft starts, in one synced batch.
	b := s.db.NewBatch()
	b.Put(engine.CFMeta, []byte(metaLocalIDKey), beBytes(s.memberID))
	b.Put(engine.CFMeta, []byte(metaClusterIDKey), beBytes(s.clusterID))
	for _, m := range s.cluster.Members() {
		b.Put(engine.CFMeta, memberKey(m.ID), encodeMember(m))
	}
	if err := s.db.Write(b, true); err != nil {
		return nil, err
	}
	return peers, nil
}

const metaLocalIDKey = "local/member-id"

func (s *Server) loadMembers() error {
	for _, prefix := range []string{metaMemberPrefix, metaRemovedPrefix} {
		it, err := s.db.NewIterator(engine.CFMeta, engine.IterOptions{Lower: []byte(prefix), Upper: prefixEnd([]byte(prefix))})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			if prefix == metaMemberPrefix {
				m, err := decodeMember(it.Value())
				if err != nil {
					it.Close()
					return err
				}
				s.cluster.setMember(m)
			} else {
				id, err := decodeRemovedKey(it.Key()) // membership.go
				if err != nil {
					it.Close()
					return err
				}
				s.cluster.removeMember(id)
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Serve starts the client and peer listeners and the background loops. It
// returns once they are listening.
func (s *Server) Serve() error {
	peerMux := http.NewServeMux()
	peerMux.Handle("/raft/", s.tr.Handler())
	peerMux.HandleFunc("/members", s.serveMembers)
	peerMux.HandleFunc(peerHashKVPath, s.serveHashKV) // corrupt.go
	if s.cfg.ExperimentalPeerFaults {
		peerMux.Handle(faultsPath, faultsHandler{faults: s.tr.Faults(), stats: s.tr.Stats, raftLogFirstIndex: func() uint64 {
			first, _ := s.rstore.FirstIndex()
			return first
		}})
	}
	if failpoint.Enabled {
		peerMux.Handle(failpointsPath, failpointsHandler{})
	}
	s.peerSrv = &http.Server{Handler: peerMux, ReadHeaderTimeout: 5 * time.Second}
	s.tr.ConfigureServer(s.peerSrv) // cleartext HTTP/2 for the raft streams
	for _, u := range s.cfg.ListenPeerURLs {
		ln, err := listen(u)
		if err != nil {
			return err
		}
		s.peerLns = append(s.peerLns, ln)
		if s.tlsc.peer != nil {
			go s.peerSrv.ServeTLS(ln, "", "") // TLSConfig set by ConfigureServer
		} else {
			go s.peerSrv.Serve(ln)
		}
	}

	if s.cfg.InitialCorruptCheck {
		// As etcd: peers answer on the peer port, clients wait until the
		// data is known to agree with the cluster's.
		if err := s.initialCorruptCheck(s.ctx); err != nil { // corrupt.go
			return err
		}
	}

	for _, u := range s.cfg.ListenClientURLs {
		ln, err := listen(u)
		if err != nil {
			return err
		}
		s.clientLns = append(s.clientLns, s.wrapClientListener(u, ln)) // tls.go
	}
	// The Lock and Election services talk to this member as a client.
	self, err := clientv3.New(clientv3.Config{Endpoints: []string{s.clientLns[0].Addr().String()}, TLS: s.selfDialTLS(), Logger: s.lg.Named("self-client")})
	if err != nil {
		return err
	}
	s.selfClient = self
	s.grpc = s.newGRPCServer()
	if err := s.serveClientListeners(); err != nil {
		return err
	}

	ret, revs, _ := parseAutoCompaction(s.cfg.AutoCompactionMode, s.cfg.AutoCompactionRetention)
	c := &compactor{s: s, period: ret, revisions: revs, lg: s.lg.Named("compactor")}
	s.goAttached(func() { c.run(s.ctx) })
	s.goAttached(func() { s.lessor.run(s.ctx) })
	s.goAttached(func() { s.alarms.watchQuota(s.ctx) })
	if s.cfg.CorruptCheckTime > 0 {
		s.goAttached(func() { s.monitorKVHash(s.ctx) }) // corrupt.go
	}
	s.goAttached(func() { s.truncateLogLoop(s.ctx) })
	s.goAttached(func() { s.publishAttributes(s.ctx) })
	return nil
}

// goAttached runs fn in a goroutine that Stop waits for.
func (s *Server) goAttached(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

func listen(rawURL string) (net.Listener, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "unix" || u.Scheme == "unixs" {
		return net.Listen("unix", u.Host+u.Path)
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("server: listen on %s: %w", rawURL, err)
	}
	return ln, nil
}

// ClientAddrs returns the addresses the client listeners are bound to.
func (s *Server) ClientAddrs() []string {
	out := make([]string, 0, len(s.clientLns))
	for _, ln := range s.clientLns {
		out = append(out, ln.Addr().String())
	}
	return out
}

// ID returns the member's ID.
func (s *Server) ID() uint64 { return s.memberID }

// ClusterID returns the cluster's ID.
func (s *Server) ClusterID() uint64 { return s.clusterID }

// Stop shuts the member down gracefully: stop accepting, end watch
// streams, drain in-flight requests up to ShutdownTimeout, stop raft and
// the background loops, close the engine. It is safe to call more than
// once and from any goroutine.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		defer close(s.done)
		s.lg.Info("stopping member", zap.String("name", s.cfg.Name))
		close(s.draining)
		s.obs.beginStop()
		if s.grpc != nil {
			stopped := make(chan struct{})
			go func() {
				s.grpc.GracefulStop() // refuses new RPCs at once
				close(stopped)
			}()
			// Long-lived streams would hold GracefulStop forever: end them.
			if s.watchSrv != nil {
				s.watchSrv.Close()
			}
			if s.selfClient != nil {
				s.selfClient.Close()
			}
			select {
			case <-stopped:
			case <-time.After(s.cfg.ShutdownTimeout):
				s.lg.Warn("graceful stop timed out; closing connections", zap.Duration("timeout", s.cfg.ShutdownTimeout))
				s.grpc.Stop()
			}
		}
		s.obs.stop()
		s.waits.stop(errStopped) // proposals waiting for an answer
		s.cancel()
		if s.peerSrv != nil {
			s.peerSrv.Close()
		}
		s.wg.Wait()
		if s.node != nil {
			s.node.Stop()
		}
		if s.tr != nil {
			s.tr.Stop()
		}
		s.peerConns.closeAll()
		s.closeStorage()
		s.lg.Info("member stopped", zap.String("name", s.cfg.Name))
	})
	<-s.done
}

// Done is closed once the server has stopped (for example after it was
// removed from the cluster).
func (s *Server) Done() <-chan struct{} { return s.done }

func (s *Server) closeStorage() {
	if s.authStore != nil {
		s.authStore.Close() // stops token expiry; the store stays readable
	}
	if s.kv != nil {
		if err := s.kv.Close(); err != nil {
			s.lg.Warn("closing mvcc", zap.Error(err))
		}
		s.kv = nil
	}
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			s.lg.Warn("closing engine", zap.Error(err))
		}
		s.db = nil
	}
	if s.raftDB != nil {
		if err := s.raftDB.Close(); err != nil {
			s.lg.Warn("closing raft engine", zap.Error(err))
		}
		s.raftDB = nil
	}
}

// header returns a response header at the store's current revision.
func (s *Server) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.memberID, Revision: rev, RaftTerm: s.node.Term()}
}

// raftHandler adapts the server to the transport's Raft interface.
type raftHandler Server

func (h *raftHandler) Process(ctx context.Context, m raftpb.Message) error {
	s := (*Server)(h)
	if s.cluster.IsRemoved(m.From) {
		return errMemberRemoved
	}
	n := s.raftNode.Load()
	if n == nil {
		return raftlog.ErrStopped
	}
	return n.Step(ctx, m)
}

func (h *raftHandler) ReportUnreachable(id uint64) {
	if n := (*Server)(h).raftNode.Load(); n != nil {
		n.ReportUnreachable(id)
	}
}

func (h *raftHandler) ReportSnapshot(id uint64, st raftSnapshotStatus) {
	if n := (*Server)(h).raftNode.Load(); n != nil {
		n.ReportSnapshot(id, st)
	}
}

var (
	errMemberRemoved = errors.New("server: the member has been permanently removed from the cluster")
	errPeerURLExists = errors.New("server: peer URLs already exist")
)
