package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
)

// maintenanceServer serves etcd's Maintenance service.
type maintenanceServer struct{ s *Server }

func (m maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp, err := m.s.propose(ctx, &pb.InternalRaftRequest{Alarm: r})
	if err != nil {
		return nil, toGRPCError(err)
	}
	out := resp.(*pb.AlarmResponse)
	m.s.fillHeader(out.Header)
	return out, nil
}

func (m maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	s := m.s
	st := s.node.Status()
	_, isLearner := st.Config.Learners[s.memberID]
	resp := &pb.StatusResponse{
		Header:           s.header(s.kv.Rev()),
		Version:          Version,
		DbSize:           s.alarms.dbSizeBytes.Load(),
		DbSizeInUse:      s.alarms.dbSizeInUseBytes.Load(),
		DbSizeQuota:      s.cfg.QuotaBackendBytes,
		Leader:           st.Lead,
		RaftIndex:        st.Commit,
		RaftTerm:         st.Term,
		RaftAppliedIndex: s.applied.Load(),
		IsLearner:        isLearner,
		StorageVersion:   "3.6.0",
	}
	for _, a := range s.alarms.list() {
		resp.Errors = append(resp.Errors, fmt.Sprintf("memberID:%d alarm:%s ", a.MemberID, a.Alarm))
	}
	return resp, nil
}

// Defragment compacts every column family of the engine. MetaStore needs no
// defragmentation to return space (compaction does it), so this is only a
// way to force RocksDB to rewrite everything now; it never blocks writers.
func (m maintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	s := m.s
	for cf := engine.CF(0); cf < engine.NumCFs; cf++ {
		if err := ctx.Err(); err != nil {
			return nil, toGRPCError(err)
		}
		if err := s.db.CompactRange(cf, nil, nil); err != nil {
			return nil, toGRPCError(err)
		}
	}
	s.alarms.sample()
	return &pb.DefragmentResponse{Header: s.header(s.kv.Rev())}, nil
}

// Hash returns a hash of the key-value state at the current revision. etcd
// hashes its whole bbolt file; MetaStore's files differ between members by
// design, so it hashes what they must agree on (see HashKV).
func (m maintenanceServer) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	s := m.s
	rev := s.kv.Rev()
	h, _, err := s.kv.HashKV(rev)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.HashResponse{Header: s.header(rev), Hash: h}, nil
}

func (m maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	s := m.s
	rev := r.Revision
	if rev == 0 {
		rev = s.kv.Rev()
	}
	h, compacted, err := s.kv.HashKV(rev)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.HashKVResponse{Header: s.header(s.kv.Rev()), Hash: h, CompactRevision: compacted, HashRevision: rev}, nil
}

// snapshotChunkBytes is the size of one Snapshot response message.
const snapshotChunkBytes = 32 * 1024

// Snapshot streams a consistent copy of the member's state: an engine
// checkpoint packed as a tar stream, followed by the SHA-256 of everything
// before it (as etcd appends the SHA-256 of its db file). `metastore
// snapshot restore` verifies it and builds a new data directory from it.
func (m maintenanceServer) Snapshot(_ *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	s := m.s
	dir, release, err := s.checkpoint()
	if err != nil {
		return toGRPCError(err)
	}
	defer release()
	total, err := checkpointSize(dir)
	if err != nil {
		return toGRPCError(err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeCheckpointTar(pw, dir)) }()
	defer pr.Close()

	h := sha256.New()
	buf := make([]byte, snapshotChunkBytes)
	var sent int64
	for {
		n, rerr := io.ReadFull(pr, buf)
		if n > 0 {
			h.Write(buf[:n])
			sent += int64(n)
			resp := &pb.SnapshotResponse{
				Header:         s.header(s.kv.Rev()),
				RemainingBytes: uint64(max(total-sent, 0)) + sha256.Size,
				Blob:           append([]byte(nil), buf[:n]...),
				Version:        Version,
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return toGRPCError(rerr)
		}
	}
	s.lg.Info("sent snapshot", zap.Int64("bytes", sent))
	return stream.Send(&pb.SnapshotResponse{Header: s.header(s.kv.Rev()), Blob: h.Sum(nil), Version: Version})
}

func (m maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	s := m.s
	if !s.node.IsLeader() {
		return nil, rpctypes.ErrGRPCNotLeader
	}
	target := s.cluster.Member(r.TargetID)
	if target == nil || target.IsLearner {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if err := s.node.TransferLeadership(ctx, r.TargetID); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MoveLeaderResponse{Header: s.header(s.kv.Rev())}, nil
}

// Downgrade answers as an etcd whose cluster cannot be downgraded: MetaStore
// has no older storage version to go back to, so no target is valid and no
// downgrade is ever in progress.
func (m maintenanceServer) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	switch r.Action {
	case pb.DowngradeRequest_CANCEL:
		return nil, rpctypes.ErrGRPCNoInflightDowngrade
	default:
		return nil, rpctypes.ErrGRPCInvalidDowngradeTargetVersion
	}
}
