package server

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metastore/metastore/mvcc"
)

// kvServer serves etcd's KV service.
type kvServer struct{ s *Server }

func (k kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := mvcc.ValidateRange(r); err != nil {
		return nil, toGRPCError(err)
	}
	s := k.s
	if !r.Serializable {
		if err := s.linearizableReadNotify(ctx); err != nil {
			return nil, toGRPCError(err)
		}
	}
	resp, err := s.kv.Range(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	s.fillHeader(resp.Header)
	return resp, nil
}

func (k kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := mvcc.ValidatePut(r); err != nil {
		return nil, toGRPCError(err)
	}
	if err := k.s.alarms.checkWrite(); err != nil {
		return nil, toGRPCError(err)
	}
	resp, err := k.s.propose(ctx, &pb.InternalRaftRequest{Put: r})
	if err != nil {
		return nil, toGRPCError(err)
	}
	out := resp.(*pb.PutResponse)
	k.s.fillHeader(out.Header)
	return out, nil
}

func (k kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := mvcc.ValidateDeleteRange(r); err != nil {
		return nil, toGRPCError(err)
	}
	resp, err := k.s.propose(ctx, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, toGRPCError(err)
	}
	out := resp.(*pb.DeleteRangeResponse)
	k.s.fillHeader(out.Header)
	return out, nil
}

func (k kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	s := k.s
	if err := mvcc.ValidateTxn(r, s.cfg.MaxTxnOps); err != nil {
		return nil, toGRPCError(err)
	}
	if isTxnReadOnly(r) {
		// As etcd: a txn that writes nothing is served as a read, not
		// through raft; linearizable unless every range in it is
		// serializable.
		if !isTxnSerializable(r) {
			if err := s.linearizableReadNotify(ctx); err != nil {
				return nil, toGRPCError(err)
			}
		}
		resp, err := s.kv.ReadTxn(ctx, r)
		if err != nil {
			return nil, toGRPCError(err)
		}
		s.fillTxnHeaders(resp)
		return resp, nil
	}
	if txnHasPut(r) {
		if err := s.alarms.checkWrite(); err != nil {
			return nil, toGRPCError(err)
		}
	}
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, toGRPCError(err)
	}
	out := resp.(*pb.TxnResponse)
	s.fillTxnHeaders(out)
	return out, nil
}

func (k kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := k.s.compact(ctx, r.Revision, r.Physical)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

// compact proposes a compaction; with physical it also waits until the
// compaction has physically removed the old revisions.
func (s *Server) compact(ctx context.Context, rev int64, physical bool) (*pb.CompactionResponse, error) {
	res, err := s.propose(ctx, &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: rev, Physical: physical}})
	if err != nil {
		return nil, err
	}
	cr := res.(*compactResult)
	if physical {
		select {
		case <-cr.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp := cr.resp
	if resp.Header == nil {
		resp.Header = &pb.ResponseHeader{}
	}
	resp.Header.Revision = s.kv.Rev()
	s.fillHeader(resp.Header)
	return resp, nil
}

// fillHeader completes a header the store filled with its revision.
func (s *Server) fillHeader(h *pb.ResponseHeader) {
	if h == nil {
		return
	}
	h.ClusterId = s.clusterID
	h.MemberId = s.memberID
	h.RaftTerm = s.node.Term()
}

func (s *Server) fillTxnHeaders(r *pb.TxnResponse) {
	s.fillHeader(r.Header)
	for _, op := range r.Responses {
		switch v := op.Response.(type) {
		case *pb.ResponseOp_ResponseRange:
			s.fillHeader(v.ResponseRange.Header)
		case *pb.ResponseOp_ResponsePut:
			s.fillHeader(v.ResponsePut.Header)
		case *pb.ResponseOp_ResponseDeleteRange:
			s.fillHeader(v.ResponseDeleteRange.Header)
		case *pb.ResponseOp_ResponseTxn:
			s.fillTxnHeaders(v.ResponseTxn)
		}
	}
}

func isTxnReadOnly(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
			case *pb.RequestOp_RequestTxn:
				if !isTxnReadOnly(v.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

func isTxnSerializable(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				if !v.RequestRange.Serializable {
					return false
				}
			case *pb.RequestOp_RequestTxn:
				if !isTxnSerializable(v.RequestTxn) {
					return false
				}
			}
		}
	}
	return true
}

func txnHasPut(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestPut:
				return true
			case *pb.RequestOp_RequestTxn:
				if txnHasPut(v.RequestTxn) {
					return true
				}
			}
		}
	}
	return false
}
