package server

// Corruption detection, as etcd's corruptionChecker
// (server/etcdserver/corrupt.go): members compare HashKV at one revision
// over the peer port.
//
//   - Initial check (--experimental-initial-corrupt-check): before a member
//     serves clients it hashes its key space at its current revision and
//     asks every peer for its hash at that revision. A peer with the same
//     compaction revision and a different hash means this member's data
//     differs from the cluster's: it refuses to start with
//     "<id> found data inconsistency with peers". A peer that cannot answer
//     (down, lagging, compacted past the revision) only logs a warning.
//   - Periodic check (--experimental-corrupt-check-time): every interval the
//     leader hashes its own key space, asks the followers for theirs at the
//     same revision, waits for a linearizable read, and hashes again. A
//     follower whose hash differs at the same compaction revision, or whose
//     revision or compaction revision is ahead of the leader's, gets the
//     CORRUPT alarm (proposed through raft, so every member applies it). A
//     leader whose own hash changed at an unchanged revision alarms itself.
//
// While CORRUPT is active, every write fails with etcd's "etcdserver: corrupt
// cluster" on every member (alarm.go); reads are served, as etcd serves them
// outside its applier.
//
// The peer endpoint is etcd's: GET /members/hashkv with a JSON
// HashKVRequest body, answered with a JSON HashKVResponse whose header
// revision is the member's current revision.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/mvcc"
)

// peerHashKVPath is etcd's PeerHashKVPath.
const peerHashKVPath = "/members/hashkv"

// maxHashKVRequestBytes bounds the body of a peer's HashKV request (a JSON
// HashKVRequest is a few dozen bytes).
const maxHashKVRequestBytes = 4 << 10

// maxHashKVResponseBytes bounds the body read back from a peer.
const maxHashKVResponseBytes = 64 << 10

// Errors of the corruption check, with etcd's texts.
var (
	// errClusterIDMismatch is etcd's rafthttp.ErrClusterIDMismatch.
	errClusterIDMismatch = errors.New("cluster ID mismatch")
	// errDataInconsistency is the initial check's verdict.
	errDataInconsistency = errors.New("found data inconsistency with peers")
)

// peerHashKV is one peer's answer (resp) or failure (err).
type peerHashKV struct {
	id   uint64
	urls []string
	resp *pb.HashKVResponse
	err  error
}

// serveHashKV is the peer endpoint: this member's HashKV at the requested
// revision (0: current).
func (s *Server) serveHashKV(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != peerHashKVPath {
		http.Error(w, "bad path", http.StatusBadRequest)
		return
	}
	if gcid := r.Header.Get("X-Etcd-Cluster-ID"); gcid != "" && gcid != fmt.Sprintf("%x", s.clusterID) {
		http.Error(w, errClusterIDMismatch.Error(), http.StatusPreconditionFailed)
		return
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, maxHashKVRequestBytes+1))
	if err != nil || len(b) > maxHashKVRequestBytes {
		http.Error(w, "error reading body", http.StatusBadRequest)
		return
	}
	var req pb.HashKVRequest
	if err := json.Unmarshal(b, &req); err != nil {
		http.Error(w, "error unmarshalling request", http.StatusBadRequest)
		return
	}
	if req.Revision < 0 {
		http.Error(w, mvcc.ErrFutureRev.Error(), http.StatusBadRequest)
		return
	}
	cur := s.kv.Rev()
	h, err := s.kv.HashByRev(req.Revision)
	if err != nil {
		s.lg.Warn("failed to get hashKV", zap.Int64("requested-revision", req.Revision), zap.Error(err))
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, err := json.Marshal(&pb.HashKVResponse{
		Header:          &pb.ResponseHeader{ClusterId: s.clusterID, MemberId: s.memberID, Revision: cur},
		Hash:            h.Hash,
		CompactRevision: h.CompactRevision,
		HashRevision:    h.Revision,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("X-Etcd-Cluster-ID", fmt.Sprintf("%x", s.clusterID))
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
}

// peerHashClient is the HTTP client of the corruption check's peer requests.
func (s *Server) peerHashClient() *http.Client {
	c := &http.Client{
		Timeout:       s.cfg.RequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	if s.tlsc.peer != nil {
		c.Transport = &http.Transport{TLSClientConfig: s.tlsc.peer.Clone()}
	}
	return c
}

// fetchPeerHashKV asks one peer URL for its HashKV at rev. A compacted or
// future revision comes back as mvcc.ErrCompacted or mvcc.ErrFutureRev.
func (s *Server) fetchPeerHashKV(ctx context.Context, c *http.Client, url string, rev int64) (*pb.HashKVResponse, error) {
	body, err := json.Marshal(&pb.HashKVRequest{Revision: rev})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+peerHashKVPath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Etcd-Cluster-ID", fmt.Sprintf("%x", s.clusterID))
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxHashKVResponseBytes))
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(string(b), mvcc.ErrCompacted.Error()):
		return nil, mvcc.ErrCompacted
	case resp.StatusCode == http.StatusBadRequest && strings.Contains(string(b), mvcc.ErrFutureRev.Error()):
		return nil, mvcc.ErrFutureRev
	case resp.StatusCode == http.StatusPreconditionFailed && strings.Contains(string(b), errClusterIDMismatch.Error()):
		return nil, errClusterIDMismatch
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("unknown error: %s", bytes.TrimSpace(b))
	}
	var out pb.HashKVResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// peerHashKVs asks every other member for its HashKV at rev, trying each of
// a member's peer URLs until one answers.
func (s *Server) peerHashKVs(ctx context.Context, rev int64) []peerHashKV {
	c := s.peerHashClient()
	defer c.CloseIdleConnections()
	var out []peerHashKV
	for _, m := range s.cluster.Members() {
		if m.ID == s.memberID || len(m.PeerURLs) == 0 {
			continue
		}
		p := peerHashKV{id: m.ID, urls: m.PeerURLs}
		for _, u := range m.PeerURLs {
			rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			p.resp, p.err = s.fetchPeerHashKV(rctx, c, u, rev)
			cancel()
			if p.err == nil {
				break
			}
			s.lg.Warn("failed hash kv request", zap.String("local-member-id", fmt.Sprintf("%x", s.memberID)),
				zap.Int64("requested-revision", rev), zap.String("remote-peer-endpoint", u), zap.Error(p.err))
		}
		out = append(out, p)
	}
	return out
}

// initialCorruptCheck compares this member's hash with its peers' before
// it serves clients; a mismatch at the same compaction revision is fatal.
func (s *Server) initialCorruptCheck(ctx context.Context) error {
	id := fmt.Sprintf("%016x", s.memberID)
	s.lg.Info("starting initial corruption check", zap.String("local-member-id", id), zap.Duration("timeout", s.cfg.RequestTimeout))
	h, err := s.kv.HashByRev(0)
	if err != nil {
		return fmt.Errorf("%s failed to fetch hash (%v)", id, err)
	}
	mismatch := 0
	for _, p := range s.peerHashKVs(ctx, h.Revision) {
		fields := []zap.Field{
			zap.String("local-member-id", id), zap.Int64("local-member-revision", h.Revision),
			zap.Int64("local-member-compact-revision", h.CompactRevision), zap.Uint32("local-member-hash", h.Hash),
			zap.String("remote-peer-id", fmt.Sprintf("%016x", p.id)), zap.Strings("remote-peer-endpoints", p.urls),
		}
		switch {
		case p.resp != nil && p.resp.Hash != h.Hash && p.resp.CompactRevision == h.CompactRevision:
			s.lg.Warn("found different hash values from remote peer", append(fields,
				zap.Int64("remote-peer-compact-revision", p.resp.CompactRevision), zap.Uint32("remote-peer-hash", p.resp.Hash))...)
			mismatch++
		case p.resp != nil && p.resp.Hash != h.Hash:
			s.lg.Warn("found different compact revision values from remote peer", append(fields,
				zap.Int64("remote-peer-compact-revision", p.resp.CompactRevision), zap.Uint32("remote-peer-hash", p.resp.Hash))...)
		case errors.Is(p.err, mvcc.ErrFutureRev):
			s.lg.Warn("cannot fetch hash from slow remote peer", append(fields, zap.Error(p.err))...)
		case errors.Is(p.err, mvcc.ErrCompacted):
			s.lg.Warn("cannot fetch hash from remote peer; local member is behind", append(fields, zap.Error(p.err))...)
		case errors.Is(p.err, errClusterIDMismatch):
			s.lg.Warn("cluster ID mismatch", append(fields, zap.Error(p.err))...)
		}
	}
	if mismatch > 0 {
		return fmt.Errorf("%s %w", id, errDataInconsistency)
	}
	s.lg.Info("initial corruption checking passed; no corruption", zap.String("local-member-id", id))
	return nil
}

// monitorKVHash runs the periodic check on the leader every
// CorruptCheckTime until ctx ends.
func (s *Server) monitorKVHash(ctx context.Context) {
	interval := s.cfg.CorruptCheckTime
	s.lg.Info("enabled corruption checking", zap.String("local-member-id", fmt.Sprintf("%016x", s.memberID)), zap.Duration("interval", interval))
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.node.IsLeader() || s.alarms.active(pb.AlarmType_CORRUPT) {
			continue
		}
		if err := s.periodicCorruptCheck(ctx); err != nil && ctx.Err() == nil {
			s.lg.Warn("failed to check hash KV", zap.Error(err))
		}
	}
}

// periodicCorruptCheck is one pass of etcd's PeriodicCheck, run by the
// leader.
func (s *Server) periodicCorruptCheck(ctx context.Context) error {
	h, err := s.kv.HashByRev(0)
	if err != nil {
		return err
	}
	peers := s.peerHashKVs(ctx, h.Revision)
	if err := s.linearizableReadNotify(ctx); err != nil {
		return err
	}
	h2, err := s.kv.HashByRev(0)
	if err != nil {
		return err
	}
	alarmed := false
	mismatch := func(id uint64) {
		if alarmed {
			return
		}
		alarmed = true
		s.triggerCorruptAlarm(ctx, id)
	}
	if h2.Hash != h.Hash && h2.Revision == h.Revision && h2.CompactRevision == h.CompactRevision {
		s.lg.Warn("found hash mismatch", zap.Int64("revision-1", h.Revision), zap.Int64("compact-revision-1", h.CompactRevision),
			zap.Uint32("hash-1", h.Hash), zap.Int64("revision-2", h2.Revision), zap.Int64("compact-revision-2", h2.CompactRevision),
			zap.Uint32("hash-2", h2.Hash))
		mismatch(s.memberID)
	}
	checked := 0
	for _, p := range peers {
		if p.resp == nil {
			continue
		}
		checked++
		peer := zap.String("follower-peer-id", fmt.Sprintf("%016x", p.id))
		if p.resp.Header != nil && p.resp.Header.Revision > h2.Revision {
			s.lg.Warn("revision from follower must be less than or equal to leader's",
				zap.Int64("leader-revision", h2.Revision), zap.Int64("follower-revision", p.resp.Header.Revision), peer)
			mismatch(p.id)
		}
		if p.resp.CompactRevision > h2.CompactRevision {
			s.lg.Warn("compact revision from follower must be less than or equal to leader's",
				zap.Int64("leader-compact-revision", h2.CompactRevision), zap.Int64("follower-compact-revision", p.resp.CompactRevision), peer)
			mismatch(p.id)
		}
		if p.resp.CompactRevision == h.CompactRevision && p.resp.Hash != h.Hash {
			s.lg.Warn("same compact revision then hashes must match",
				zap.Int64("leader-compact-revision", h2.CompactRevision), zap.Uint32("leader-hash", h.Hash),
				zap.Int64("follower-compact-revision", p.resp.CompactRevision), zap.Uint32("follower-hash", p.resp.Hash), peer)
			mismatch(p.id)
		}
	}
	s.lg.Info("finished peer corruption check", zap.Int("number-of-peers-checked", checked))
	return nil
}

// triggerCorruptAlarm raises CORRUPT for member id through raft, so every
// member applies it.
func (s *Server) triggerCorruptAlarm(ctx context.Context, id uint64) {
	s.goAttached(func() {
		_, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
			Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_CORRUPT}})
		if err != nil {
			s.lg.Warn("raising the CORRUPT alarm failed", zap.String("member-id", fmt.Sprintf("%016x", id)), zap.Error(err))
			return
		}
		s.lg.Error("raised the CORRUPT alarm", zap.String("member-id", fmt.Sprintf("%016x", id)))
	})
}
