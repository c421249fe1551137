package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
)

// clusterServer serves etcd's Cluster service. Membership changes go
// through raft as ConfChangeV2 entries whose context carries the member.
type clusterServer struct{ s *Server }

// learnerReadyPercent is how far a learner's log must have caught up with
// the leader's before it may be promoted, as etcd.
const learnerReadyPercent = 0.9

func (c clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	s := c.s
	if len(r.PeerURLs) == 0 {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	for _, u := range r.PeerURLs {
		if err := checkURL(u); err != nil {
			return nil, rpctypes.ErrGRPCMemberBadURLs
		}
	}
	if err := s.cluster.checkNewPeerURLs(0, r.PeerURLs); err != nil {
		return nil, toGRPCError(err)
	}
	now := time.Now()
	m := &Member{ID: computeMemberID(r.PeerURLs, s.cfg.InitialClusterToken, &now), PeerURLs: r.PeerURLs, IsLearner: r.IsLearner}
	if s.cluster.Member(m.ID) != nil {
		return nil, rpctypes.ErrGRPCMemberExist
	}
	typ := raftpb.ConfChangeAddNode
	if r.IsLearner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	members, err := s.proposeConfChange(ctx, raftpb.ConfChangeSingle{Type: typ, NodeID: m.ID}, m)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberAddResponse{Header: s.header(s.kv.Rev()), Member: m.pb(), Members: membersPB(members)}, nil
}

func (c clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	s := c.s
	if s.cluster.Member(r.ID) == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	members, err := s.proposeConfChange(ctx, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeRemoveNode, NodeID: r.ID}, nil)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberRemoveResponse{Header: s.header(s.kv.Rev()), Members: membersPB(members)}, nil
}

func (c clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	s := c.s
	old := s.cluster.Member(r.ID)
	if old == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	for _, u := range r.PeerURLs {
		if err := checkURL(u); err != nil {
			return nil, rpctypes.ErrGRPCMemberBadURLs
		}
	}
	if err := s.cluster.checkNewPeerURLs(r.ID, r.PeerURLs); err != nil {
		return nil, toGRPCError(err)
	}
	m := old.clone()
	m.PeerURLs = r.PeerURLs
	members, err := s.proposeConfChange(ctx, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeUpdateNode, NodeID: r.ID}, m)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberUpdateResponse{Header: s.header(s.kv.Rev()), Members: membersPB(members)}, nil
}

func (c clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	s := c.s
	if r.Linearizable {
		if err := s.linearizableReadNotify(ctx); err != nil {
			return nil, toGRPCError(err)
		}
	}
	return &pb.MemberListResponse{Header: s.header(s.kv.Rev()), Members: membersPB(s.cluster.Members())}, nil
}

func (c clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	s := c.s
	m := s.cluster.Member(r.ID)
	if m == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	if !m.IsLearner {
		return nil, rpctypes.ErrGRPCMemberNotLearner
	}
	if !s.node.IsLeader() {
		// Only the leader knows the learner's progress; etcd forwards, we
		// forward over the leader's client URL.
		cc, err := s.leaderClient(ctx)
		if err != nil {
			return nil, toGRPCError(err)
		}
		return pb.NewClusterClient(cc).MemberPromote(ctx, r)
	}
	st := s.node.Status()
	pr, ok := st.Progress[r.ID]
	if !ok || float64(pr.Match) < float64(st.Commit)*learnerReadyPercent {
		return nil, rpctypes.ErrGRPCLearnerNotReady
	}
	members, err := s.proposeConfChange(ctx, raftpb.ConfChangeSingle{Type: raftpb.ConfChangeAddNode, NodeID: r.ID}, nil)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MemberPromoteResponse{Header: s.header(s.kv.Rev()), Members: membersPB(members)}, nil
}

// proposeConfChange replicates one membership change and waits for it to
// be applied; it returns the membership after it.
func (s *Server) proposeConfChange(ctx context.Context, ch raftpb.ConfChangeSingle, m *Member) ([]*Member, error) {
	id := s.ids.next()
	cc := raftpb.ConfChangeV2{Changes: []raftpb.ConfChangeSingle{ch}, Context: encodeConfContext(id, m)}
	wait := s.waits.Register(id)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	if err := s.node.ProposeConfChange(ctx, cc); err != nil {
		s.waits.Cancel(id)
		return nil, err
	}
	select {
	case res := <-wait:
		if res.err != nil {
			return nil, res.err
		}
		return res.resp.(*confChangeResult).members, nil
	case <-ctx.Done():
		s.waits.Cancel(id)
		return nil, ctx.Err()
	case <-s.ctx.Done():
		return nil, errStopped
	}
}

func membersPB(ms []*Member) []*pb.Member {
	out := make([]*pb.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.pb())
	}
	return out
}

// membersResponse is what a peer's /members endpoint returns: enough for a
// member joining an existing cluster to learn the cluster ID and members.
type membersResponse struct {
	ClusterID string    `json:"clusterID"`
	Members   []*Member `json:"members"`
}

func (s *Server) serveMembers(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Etcd-Cluster-ID", fmt.Sprintf("%x", s.clusterID))
	json.NewEncoder(w).Encode(membersResponse{ClusterID: fmt.Sprintf("%016x", s.clusterID), Members: s.cluster.Members()})
}

// fetchClusterFromPeers asks the peers of --initial-cluster for the
// membership of the cluster this member joins.
func fetchClusterFromPeers(initial []*Member, self uint64, timeout time.Duration, peerTLS *tls.Config) ([]*Member, uint64, error) {
	client := &http.Client{Timeout: timeout}
	if peerTLS != nil {
		client.Transport = &http.Transport{TLSClientConfig: peerTLS.Clone()}
	}
	var lastErr error
	for _, m := range initial {
		if m.ID == self {
			continue
		}
		for _, u := range m.PeerURLs {
			resp, err := client.Get(u + "/members")
			if err != nil {
				lastErr = err
				continue
			}
			var mr membersResponse
			err = json.NewDecoder(resp.Body).Decode(&mr)
			resp.Body.Close()
			if err != nil {
				lastErr = err
				continue
			}
			var cid uint64
			if _, err := fmt.Sscanf(mr.ClusterID, "%016x", &cid); err != nil {
				lastErr = err
				continue
			}
			return mr.Members, cid, nil
		}
	}
	return nil, 0, fmt.Errorf("server: cannot fetch the cluster's members from any peer of --initial-cluster: %v", lastErr)
}
