package server

import (
	"context"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
)

// publishRetryInterval is how often publishing this member's attributes is
// retried until it succeeds.
const publishRetryInterval = 500 * time.Millisecond

// publishAttributes records this member's name and client URLs in the
// replicated membership, as etcd's publishV3 does after start, so every
// member lists every member's client URLs.
func (s *Server) publishAttributes(ctx context.Context) {
	for {
		if m := s.cluster.Member(s.memberID); m != nil && m.Name == s.cfg.Name && slices.Equal(m.ClientURLs, s.cfg.AdvertiseClientURLs) {
			return
		}
		req := &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{
			Member_ID:        s.memberID,
			MemberAttributes: &membershippb.Attributes{Name: s.cfg.Name, ClientUrls: s.cfg.AdvertiseClientURLs},
		}}
		pctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		_, err := s.propose(pctx, req)
		cancel()
		if err == nil {
			s.lg.Info("published member attributes", zap.String("name", s.cfg.Name), zap.Strings("client-urls", s.cfg.AdvertiseClientURLs))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(publishRetryInterval):
		}
	}
}

// applyMemberAttributes applies a ClusterMemberAttrSet entry.
func (s *Server) applyMemberAttributes(idx uint64, r *membershippb.ClusterMemberAttrSetRequest) result {
	m := s.cluster.Member(r.Member_ID)
	if m == nil || r.MemberAttributes == nil {
		s.ensureApplied(idx)
		return result{err: errMemberNotFound}
	}
	m.Name = r.MemberAttributes.Name
	m.ClientURLs = r.MemberAttributes.ClientUrls
	err := s.kv.ApplyMeta(idx, func(b *engine.Batch) error {
		b.Put(engine.CFMeta, memberKey(m.ID), encodeMember(m))
		return nil
	})
	if err != nil {
		return result{err: err}
	}
	s.cluster.setMember(m)
	return result{resp: &pb.ResponseHeader{}}
}
