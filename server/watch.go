package server

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metastore/metastore/mvcc"
	"github.com/metastore/metastore/server/watch"
)

// newWatchServer builds the Watch service over the store's event feed.
func (s *Server) newWatchServer() *watch.Server {
	s.watchSrv = watch.NewServer(kvSource{s}, watch.Config{
		Header:          func(rev int64) *pb.ResponseHeader { return s.header(rev) },
		MaxRequestBytes: s.cfg.MaxRequestBytes + grpcOverheadBytes,
		ErrCompacted:    mvcc.ErrCompacted,
		Authorize:       s.authorizeWatch, // auth_check.go
	}, s.lg.Named("watch"))
	return s.watchSrv
}

// kvSource adapts the mvcc store to the watch server's Source.
type kvSource struct{ s *Server }

func (k kvSource) Rev() int64 { return k.s.kv.Rev() }

// CompactedRev is one below the store's compaction revision: the store
// still serves the events of the compaction revision itself (a watch may
// start there, as in etcd), and the watch source's contract names the last
// revision that is gone.
func (k kvSource) CompactedRev() int64 { return max(k.s.kv.CompactedRev()-1, 0) }

func (k kvSource) Events(fromRev, toRev int64, key, end []byte, maxEvents int) ([]mvccpb.Event, int64, error) {
	return k.s.kv.Events(fromRev, toRev, key, end, maxEvents)
}

func (k kvSource) Subscribe() watch.Subscription { return subscription{k.s.kv.Subscribe()} }

// subscription adapts mvcc.Subscription to watch.Subscription.
type subscription struct{ *mvcc.Subscription }

func (s subscription) Lagging() (bool, int64) {
	from, lagging := s.Subscription.Lagging()
	return lagging, from
}

func (s subscription) Resume(rev int64) { s.Subscription.Resume(rev) }
