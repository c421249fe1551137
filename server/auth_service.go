package server

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/metastore/metastore/engine"
	"github.com/metastore/metastore/server/auth"
)

// newAuthStore opens the auth store over the engine's auth/ keys.
func (s *Server) newAuthStore() (*auth.Store, error) {
	tp, err := auth.NewTokenProvider(auth.TokenConfig{
		Spec:           s.cfg.AuthToken,
		SimpleTokenTTL: s.cfg.AuthTokenTTL,
		IndexWaiter:    s.appliedWaiter,
		Logger:         s.lg.Named("auth"),
	})
	if err != nil {
		return nil, fmt.Errorf("server: --auth-token: %w", err)
	}
	return auth.NewStore(authBackend{s.db}, auth.Options{Logger: s.lg.Named("auth"), BcryptCost: s.cfg.BcryptCost, TokenProvider: tp})
}

// closedChan is returned by appliedWaiter for an index already applied.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// appliedWaiter returns a channel closed once index is applied here, so a
// simple token is valid on this member as soon as it applied the
// Authenticate entry that issued it.
func (s *Server) appliedWaiter(index uint64) <-chan struct{} {
	if s.applied.Load() >= index {
		return closedChan
	}
	n := s.raftNode.Load()
	if n == nil {
		return closedChan // not serving yet: nothing to wait for
	}
	// Bounded: a forged token may name any index, and each lookup holds a
	// goroutine here until the wait ends.
	ch := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.RequestTimeout)
		defer cancel()
		n.WaitApplied(ctx, index)
		close(ch)
	}()
	return ch
}

// authBackend loads the auth state from the engine.
type authBackend struct{ db *engine.DB }

func (b authBackend) Load() (auth.State, error) {
	return auth.LoadState(func(fn func(key, value []byte) error) error {
		p := []byte(auth.KeyPrefix)
		it, err := b.db.NewIterator(engine.CFMeta, engine.IterOptions{Lower: p, Upper: prefixEnd(p)})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			if err := fn(it.Key(), it.Value()); err != nil {
				it.Close()
				return err
			}
		}
		return it.Close()
	})
}

// batchWriter puts the auth store's writes into the apply batch.
type batchWriter struct{ b *engine.Batch }

func (w batchWriter) Put(key, value []byte) { w.b.Put(engine.CFMeta, key, value) }
func (w batchWriter) Delete(key []byte)     { w.b.Delete(engine.CFMeta, key) }

// isAuthRequest reports whether r is for the auth store.
func isAuthRequest(r *pb.InternalRaftRequest) bool {
	return r.Authenticate != nil || r.AuthEnable != nil || r.AuthDisable != nil || r.AuthStatus != nil ||
		r.AuthUserAdd != nil || r.AuthUserDelete != nil || r.AuthUserGet != nil || r.AuthUserList != nil ||
		r.AuthUserChangePassword != nil || r.AuthUserGrantRole != nil || r.AuthUserRevokeRole != nil ||
		r.AuthRoleAdd != nil || r.AuthRoleDelete != nil || r.AuthRoleGet != nil || r.AuthRoleList != nil ||
		r.AuthRoleGrantPermission != nil || r.AuthRoleRevokePermission != nil
}

// applyAuth applies an auth request at raft index idx; its writes commit
// with idx in one batch. authorizeApply has already checked the proposer.
func (s *Server) applyAuth(idx uint64, r *pb.InternalRaftRequest) result {
	as := s.authStore
	var resp any
	var err error
	apply := func(b *engine.Batch) error {
		w := batchWriter{b}
		switch {
		case r.Authenticate != nil:
			resp, err = as.Authenticate(s.ctx, r.Authenticate, idx)
		case r.AuthEnable != nil:
			if err = as.AuthEnable(w); err == nil {
				resp = &pb.AuthEnableResponse{}
			}
		case r.AuthDisable != nil:
			as.AuthDisable(w)
			resp = &pb.AuthDisableResponse{}
		case r.AuthStatus != nil:
			resp = &pb.AuthStatusResponse{Enabled: as.IsAuthEnabled(), AuthRevision: as.Revision()}
		case r.AuthUserAdd != nil:
			resp, err = as.UserAdd(w, r.AuthUserAdd)
		case r.AuthUserDelete != nil:
			resp, err = as.UserDelete(w, r.AuthUserDelete)
		case r.AuthUserGet != nil:
			resp, err = as.UserGet(r.AuthUserGet)
		case r.AuthUserList != nil:
			resp, err = as.UserList(r.AuthUserList)
		case r.AuthUserChangePassword != nil:
			resp, err = as.UserChangePassword(w, r.AuthUserChangePassword)
		case r.AuthUserGrantRole != nil:
			resp, err = as.UserGrantRole(w, r.AuthUserGrantRole)
		case r.AuthUserRevokeRole != nil:
			resp, err = as.UserRevokeRole(w, r.AuthUserRevokeRole)
		case r.AuthRoleAdd != nil:
			resp, err = as.RoleAdd(w, r.AuthRoleAdd)
		case r.AuthRoleDelete != nil:
			resp, err = as.RoleDelete(w, r.AuthRoleDelete)
		case r.AuthRoleGet != nil:
			resp, err = as.RoleGet(r.AuthRoleGet)
		case r.AuthRoleList != nil:
			resp, err = as.RoleList(r.AuthRoleList)
		case r.AuthRoleGrantPermission != nil:
			resp, err = as.RoleGrantPermission(w, r.AuthRoleGrantPermission)
		case r.AuthRoleRevokePermission != nil:
			resp, err = as.RoleRevokePermission(w, r.AuthRoleRevokePermission)
		}
		return nil // a refused request still records idx
	}
	if perr := s.kv.ApplyMeta(idx, apply); perr != nil {
		s.lg.Fatal("persisting auth change failed", zap.Uint64("index", idx), zap.Error(perr))
	}
	if err != nil {
		return result{err: authError(err)}
	}
	return result{resp: resp}
}

// authServer serves etcd's Auth service. Every request goes through raft,
// reads included, as etcd: the admin check happens at apply time in raft
// order (authorizeApply).
type authServer struct{ s *Server }

// maxAuthenticateAttempts bounds the retries of Authenticate when the auth
// state changes between the password check and the token's issue.
const maxAuthenticateAttempts = 16

func (a authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	s := a.s
	if err := s.linearizableReadNotify(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	for range maxAuthenticateAttempts {
		checked, err := s.authStore.CheckPassword(r.Name, r.Password)
		if err != nil {
			return nil, authError(err)
		}
		prefix, err := s.authStore.GenTokenPrefix()
		if err != nil {
			return nil, authError(err)
		}
		// No password in the log: CheckPassword already did it.
		resp, err := s.propose(ctx, &pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{Name: r.Name, SimpleToken: prefix}})
		if err != nil {
			return nil, toGRPCError(err)
		}
		if checked == s.authStore.Revision() {
			out := resp.(*pb.AuthenticateResponse)
			out.Header = s.header(s.kv.Rev())
			return out, nil
		}
		s.lg.Info("auth revision changed during authentication; retrying", zap.String("user", r.Name))
	}
	return nil, authError(auth.ErrAuthOldRevision)
}

// proposeAuth proposes an auth request and returns its response with the
// header filled in.
func proposeAuth[T interface{ GetHeader() *pb.ResponseHeader }](s *Server, ctx context.Context, r *pb.InternalRaftRequest, setHeader func(T, *pb.ResponseHeader)) (T, error) {
	var zero T
	resp, err := s.propose(ctx, r)
	if err != nil {
		return zero, toGRPCError(err)
	}
	out := resp.(T)
	setHeader(out, s.header(s.kv.Rev()))
	return out, nil
}

func (a authServer) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthEnable: r}, func(o *pb.AuthEnableResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthDisable: r}, func(o *pb.AuthDisableResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) AuthStatus(ctx context.Context, r *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthStatus: r}, func(o *pb.AuthStatusResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	if err := a.s.authStore.PrepareUserAdd(r); err != nil {
		return nil, authError(err)
	}
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthUserAdd: r}, func(o *pb.AuthUserAddResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthUserDelete: r}, func(o *pb.AuthUserDeleteResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthUserGet: r}, func(o *pb.AuthUserGetResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthUserList: r}, func(o *pb.AuthUserListResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	if err := a.s.authStore.PrepareUserChangePassword(r); err != nil {
		return nil, authError(err)
	}
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthUserChangePassword: r}, func(o *pb.AuthUserChangePasswordResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthUserGrantRole: r}, func(o *pb.AuthUserGrantRoleResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthUserRevokeRole: r}, func(o *pb.AuthUserRevokeRoleResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthRoleAdd: r}, func(o *pb.AuthRoleAddResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthRoleGet: r}, func(o *pb.AuthRoleGetResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthRoleList: r}, func(o *pb.AuthRoleListResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthRoleDelete: r}, func(o *pb.AuthRoleDeleteResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthRoleGrantPermission: r}, func(o *pb.AuthRoleGrantPermissionResponse, h *pb.ResponseHeader) { o.Header = h })
}

func (a authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	return proposeAuth(a.s, ctx, &pb.InternalRaftRequest{AuthRoleRevokePermission: r}, func(o *pb.AuthRoleRevokePermissionResponse, h *pb.ResponseHeader) { o.Header = h })
}
