package server

// Authorization on the request path, as etcd v3.6 does it:
//
//   - Writes (Put, DeleteRange, Txn, LeaseRevoke, Compaction and the auth
//     management requests) are checked at APPLY time against the identity the
//     proposer put in InternalRaftRequest.Header (Username, AuthRevision):
//     every member decides the same way, in raft order, so a revocation
//     committed before the write always wins (etcd apply/apply_auth.go).
//   - Reads (Range, read-only Txn, LeaseTimeToLive with keys, LeaseLeases) are
//     checked before reading and the auth revision is compared again after:
//     a change in between fails the read with ErrAuthOldRevision (etcd
//     doSerialize). Watch creation is checked through watch.Config.Authorize.
//   - Maintenance, cluster and alarm changes need the root role, checked in
//     the API layer (etcd v3rpc AuthAdmin.isPermitted); the rest of the
//     maintenance and lease RPCs need some authenticated user once auth is on
//     (etcd requireAuthInfo). Both live in the interceptors below, keyed by
//     method name.
//
// Internal proposals (lease expiry, auto-compaction, alarms, member
// attributes) run as root, etcd's AuthStore.WithRoot. A proposal is internal
// exactly when its context does not come from a gRPC server handler: every
// client request, including those of the gateway and of the Lock and
// Election services, reaches this member through its gRPC server.

import (
	"context"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/metastore/metastore/mvcc"
	"github.com/metastore/metastore/server/auth"
)

// rootUser is the identity of internal proposals (etcd's WithRoot).
const rootUser = "root"

// authError converts an auth error to the status etcd returns for it, and
// any other error with toGRPCError.
func authError(err error) error {
	if g, ok := auth.GRPCError(err); ok {
		return g
	}
	return toGRPCError(err)
}

// authInfoFromCtx identifies the client of ctx: by its token, else (with
// --client-cert-auth) by the common name of its verified certificate. It is
// (nil, nil) when auth is disabled or the client sent neither.
func (s *Server) authInfoFromCtx(ctx context.Context) (*auth.AuthInfo, error) {
	ai, err := s.authStore.AuthInfoFromCtx(ctx)
	if ai != nil || err != nil {
		return ai, err
	}
	if !s.cfg.ClientTLS.ClientCertAuth || !s.tlsIdentity(ctx) { // tls.go
		return nil, nil
	}
	return s.authStore.AuthInfoFromTLS(ctx), nil
}

// fillAuthHeader puts the proposer's identity into h (etcd
// raftRequestOnce). A request from a client without one gets an empty
// Username, which every apply-time check refuses once auth is on.
func (s *Server) fillAuthHeader(ctx context.Context, h *pb.RequestHeader) error {
	if grpc.ServerTransportStreamFromContext(ctx) == nil {
		h.Username, h.AuthRevision = rootUser, s.authStore.Revision()
		return nil
	}
	ai, err := s.authInfoFromCtx(ctx)
	if err != nil {
		return authError(err)
	}
	if ai != nil {
		h.Username, h.AuthRevision = ai.Username, ai.Revision
	}
	return nil
}

// authorizeApply checks r against the identity in its header at apply time
// (etcd authApplierV3). It returns a gRPC status error.
func (s *Server) authorizeApply(r *pb.InternalRaftRequest) error {
	as := s.authStore
	if !as.IsAuthEnabled() {
		return nil
	}
	ai := &auth.AuthInfo{}
	if r.Header != nil {
		ai.Username, ai.Revision = r.Header.Username, r.Header.AuthRevision
	}
	var err error
	switch {
	case needAdminPermission(r):
		err = as.IsAdminPermitted(ai)
	case r.AuthUserGet != nil:
		if err = as.IsAdminPermitted(ai); err != nil && r.AuthUserGet.Name == ai.Username {
			err = nil // a user may read itself
		}
	case r.AuthRoleGet != nil:
		if err = as.IsAdminPermitted(ai); err != nil && as.HasRole(ai.Username, r.AuthRoleGet.Role) {
			err = nil // and the roles it holds
		}
	case r.Put != nil:
		err = s.checkPutAuth(ai, r.Put)
	case r.DeleteRange != nil:
		err = checkDeleteAuth(as, ai, r.DeleteRange)
	case r.Txn != nil:
		err = s.checkTxnAuth(ai, r.Txn)
	case r.LeaseRevoke != nil:
		err = s.checkLeasePuts(ai, r.LeaseRevoke.ID)
	}
	if err != nil {
		return authError(err)
	}
	return nil
}

// needAdminPermission lists the requests only root may make (etcd's, plus
// Compaction, which etcd checks in its API layer: here it is checked in raft
// order like every other write).
func needAdminPermission(r *pb.InternalRaftRequest) bool {
	return r.AuthEnable != nil || r.AuthDisable != nil || r.AuthStatus != nil ||
		r.AuthUserAdd != nil || r.AuthUserDelete != nil || r.AuthUserChangePassword != nil ||
		r.AuthUserGrantRole != nil || r.AuthUserRevokeRole != nil ||
		r.AuthRoleAdd != nil || r.AuthRoleGrantPermission != nil || r.AuthRoleRevokePermission != nil ||
		r.AuthRoleDelete != nil || r.AuthUserList != nil || r.AuthRoleList != nil ||
		r.Compaction != nil
}

// checkPutAuth is etcd's checkPutAuth: WRITE on the key, WRITE on every key
// already attached to the lease (a user who could not revoke the lease must
// not attach to it), READ on the key for prev_kv.
func (s *Server) checkPutAuth(ai *auth.AuthInfo, r *pb.PutRequest) error {
	if err := s.authStore.IsPutPermitted(ai, r.Key); err != nil {
		return err
	}
	if err := s.checkLeasePuts(ai, r.Lease); err != nil {
		return err
	}
	if r.PrevKv {
		return s.authStore.IsRangePermitted(ai, r.Key, nil)
	}
	return nil
}

func checkDeleteAuth(as *auth.Store, ai *auth.AuthInfo, r *pb.DeleteRangeRequest) error {
	if err := as.IsDeleteRangePermitted(ai, r.Key, r.RangeEnd); err != nil {
		return err
	}
	if r.PrevKv {
		return as.IsRangePermitted(ai, r.Key, r.RangeEnd)
	}
	return nil
}

// checkTxnAuth is etcd's checkTxnPermission: READ on every compare, then
// every operation of both branches, nested txns included, whichever branch
// would run.
func (s *Server) checkTxnAuth(ai *auth.AuthInfo, r *pb.TxnRequest) error {
	as := s.authStore
	for _, c := range r.Compare {
		if err := as.IsRangePermitted(ai, c.Key, c.RangeEnd); err != nil {
			return err
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			var err error
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				if v.RequestRange != nil {
					err = as.IsRangePermitted(ai, v.RequestRange.Key, v.RequestRange.RangeEnd)
				}
			case *pb.RequestOp_RequestPut:
				if v.RequestPut != nil {
					err = s.checkPutAuth(ai, v.RequestPut)
				}
			case *pb.RequestOp_RequestDeleteRange:
				if v.RequestDeleteRange != nil {
					err = checkDeleteAuth(as, ai, v.RequestDeleteRange)
				}
			case *pb.RequestOp_RequestTxn:
				if v.RequestTxn != nil {
					err = s.checkTxnAuth(ai, v.RequestTxn)
				}
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLeasePuts requires WRITE on every key attached to lease id (etcd
// checkLeasePuts); root may do anything, an unknown lease has no keys.
func (s *Server) checkLeasePuts(ai *auth.AuthInfo, id int64) error {
	return s.checkLeaseKeys(ai, id, s.authStore.IsPutPermitted)
}

// checkLeaseKeys runs check on every key attached to lease id unless ai is
// root.
func (s *Server) checkLeaseKeys(ai *auth.AuthInfo, id int64, check func(*auth.AuthInfo, []byte) error) error {
	if id == 0 || s.authStore.IsAdminPermitted(ai) == nil {
		return nil
	}
	keys, err := s.kv.LeaseKeys(id)
	if err != nil {
		return nil // no such lease: the request fails on its own
	}
	for _, k := range keys {
		if err := check(ai, k); err != nil {
			return err
		}
	}
	return nil
}

// authorizedRead runs read once chk passed for the client of ctx, and fails
// with ErrAuthOldRevision if the auth state changed while it ran, so a read
// racing a revocation never returns data the new state forbids (etcd
// doSerialize).
func (s *Server) authorizedRead(ctx context.Context, chk func(*auth.AuthInfo) error, read func() error) error {
	ai, err := s.authInfoFromCtx(ctx)
	if err != nil {
		return authError(err)
	}
	if ai == nil {
		ai = &auth.AuthInfo{}
	}
	if err := chk(ai); err != nil {
		return authError(err)
	}
	if err := read(); err != nil {
		return err
	}
	if ai.Revision != 0 && ai.Revision != s.authStore.Revision() {
		return rpctypes.ErrGRPCAuthOldRevision
	}
	return nil
}

// requireAuthInfo refuses clients without an identity once auth is on.
func (s *Server) requireAuthInfo(ctx context.Context) (*auth.AuthInfo, error) {
	if !s.authStore.IsAuthEnabled() {
		return nil, nil
	}
	ai, err := s.authInfoFromCtx(ctx)
	if err != nil {
		return nil, authError(err)
	}
	if ai == nil {
		return nil, rpctypes.ErrGRPCUserEmpty
	}
	return ai, nil
}

// requireAdmin refuses clients without the root role once auth is on.
func (s *Server) requireAdmin(ctx context.Context) error {
	ai, err := s.authInfoFromCtx(ctx)
	if err != nil {
		return authError(err)
	}
	if err := s.authStore.IsAdminPermitted(ai); err != nil {
		return authError(err)
	}
	return nil
}

// checkLeaseRead requires READ on every key of lease id (etcd
// checkLeaseTimeToLive) and returns the auth revision it checked at.
func (s *Server) checkLeaseRead(ctx context.Context, ids ...int64) (uint64, error) {
	rev := s.authStore.Revision()
	ai, err := s.requireAuthInfo(ctx)
	if err != nil || ai == nil {
		return rev, err
	}
	for _, id := range ids {
		err := s.checkLeaseKeys(ai, id, func(ai *auth.AuthInfo, k []byte) error {
			return s.authStore.IsRangePermitted(ai, k, nil)
		})
		if err != nil {
			return rev, authError(err)
		}
	}
	return rev, nil
}

// checkLeaseRenew requires WRITE on every key of lease id (etcd
// checkLeaseRenew).
func (s *Server) checkLeaseRenew(ctx context.Context, id int64) error {
	rev := s.authStore.Revision()
	ai, err := s.requireAuthInfo(ctx)
	if err != nil || ai == nil {
		return err
	}
	if err := s.checkLeasePuts(ai, id); err != nil {
		return authError(err)
	}
	if rev != s.authStore.Revision() {
		return rpctypes.ErrGRPCAuthOldRevision
	}
	return nil
}

// authorizeWatch is watch.Config.Authorize: READ on the watched range, with
// etcd's cancel reasons.
func (s *Server) authorizeWatch(ctx context.Context, key, end []byte) error {
	ai, err := s.authInfoFromCtx(ctx)
	if err == nil {
		if ai == nil {
			ai = &auth.AuthInfo{}
		}
		err = s.authStore.IsRangePermitted(ai, key, end)
	}
	switch err {
	case nil:
		return nil
	case auth.ErrInvalidAuthToken, auth.ErrAuthOldRevision, auth.ErrUserEmpty:
		return authError(err)
	}
	return rpctypes.ErrGRPCPermissionDenied
}

// Methods checked in the API layer, by full gRPC method name.
var (
	// adminMethods need the root role (etcd AuthAdmin.isPermitted).
	adminMethods = map[string]bool{
		"/etcdserverpb.Maintenance/Defragment": true,
		"/etcdserverpb.Maintenance/Hash":       true,
		"/etcdserverpb.Maintenance/HashKV":     true,
		"/etcdserverpb.Maintenance/Snapshot":   true,
		"/etcdserverpb.Maintenance/MoveLeader": true,
		"/etcdserverpb.Maintenance/Downgrade":  true,
		"/etcdserverpb.Cluster/MemberAdd":      true,
		"/etcdserverpb.Cluster/MemberRemove":   true,
		"/etcdserverpb.Cluster/MemberUpdate":   true,
		"/etcdserverpb.Cluster/MemberPromote":  true,
		"/etcdserverpb.KV/Compact":             true,
	}
	// userMethods need an authenticated user (etcd requireAuthInfo).
	userMethods = map[string]bool{
		"/etcdserverpb.Maintenance/Status": true,
		"/etcdserverpb.Lease/LeaseGrant":   true,
		"/etcdserverpb.Lease/LeaseRevoke":  true,
	}
)

// forwardedServices call this member back through its own client (v3lock.go):
// the caller's credentials travel with those calls.
func isForwardedService(method string) bool {
	return strings.HasPrefix(method, "/v3lockpb.Lock/") || strings.HasPrefix(method, "/v3electionpb.Election/")
}

// forwardAuthMetadata copies the client's token from ctx's incoming metadata
// to its outgoing metadata, for calls this member makes on the client's
// behalf (to itself or to the leader).
func forwardAuthMetadata(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	for _, k := range []string{rpctypes.TokenFieldNameGRPC, "authorization"} {
		if v := md.Get(k); len(v) > 0 {
			ctx = metadata.AppendToOutgoingContext(ctx, k, v[0])
		}
	}
	return ctx
}

// unaryAuth is the API-layer half of authorization (see the file comment).
func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	m := info.FullMethod
	switch {
	case adminMethods[m]:
		if err := s.requireAdmin(ctx); err != nil {
			return nil, err
		}
	case userMethods[m]:
		if _, err := s.requireAuthInfo(ctx); err != nil {
			return nil, err
		}
	case isForwardedService(m):
		return h(forwardAuthMetadata(ctx), req)
	}
	switch r := req.(type) {
	case *pb.AlarmRequest:
		if r.Action == pb.AlarmRequest_GET {
			if _, err := s.requireAuthInfo(ctx); err != nil {
				return nil, err
			}
		} else if err := s.requireAdmin(ctx); err != nil {
			return nil, err
		}
	case *pb.RangeRequest:
		// Validation before permission, as etcd's v3rpc: an invalid request
		// gets its validation error whoever sends it.
		if err := mvcc.ValidateRange(r); err != nil {
			return nil, toGRPCError(err)
		}
		return s.readWithAuth(ctx, req, h, func(ai *auth.AuthInfo) error {
			return s.authStore.IsRangePermitted(ai, r.Key, r.RangeEnd)
		})
	case *pb.TxnRequest:
		if isTxnReadOnly(r) { // writes are checked at apply time
			if err := mvcc.ValidateTxn(r, s.cfg.MaxTxnOps); err != nil {
				return nil, toGRPCError(err)
			}
			return s.readWithAuth(ctx, req, h, func(ai *auth.AuthInfo) error { return s.checkTxnAuth(ai, r) })
		}
	case *pb.LeaseTimeToLiveRequest:
		if !r.Keys {
			if _, err := s.requireAuthInfo(ctx); err != nil {
				return nil, err
			}
			break
		}
		return s.leaseReadWithAuth(ctx, req, h, r.ID)
	case *pb.LeaseLeasesRequest:
		leases := s.kv.Leases()
		ids := make([]int64, 0, len(leases))
		for _, l := range leases {
			ids = append(ids, l.ID)
		}
		return s.leaseReadWithAuth(ctx, req, h, ids...)
	}
	return h(ctx, req)
}

func (s *Server) readWithAuth(ctx context.Context, req any, h grpc.UnaryHandler, chk func(*auth.AuthInfo) error) (resp any, err error) {
	err = s.authorizedRead(ctx, chk, func() error {
		resp, err = h(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) leaseReadWithAuth(ctx context.Context, req any, h grpc.UnaryHandler, ids ...int64) (any, error) {
	rev, err := s.checkLeaseRead(ctx, ids...)
	if err != nil {
		return nil, err
	}
	resp, err := h(ctx, req)
	if err != nil {
		return nil, err
	}
	if s.authStore.IsAuthEnabled() && rev != s.authStore.Revision() {
		return nil, rpctypes.ErrGRPCAuthOldRevision
	}
	return resp, nil
}

// streamAuth is unaryAuth for streams; Watch is checked per watcher by
// authorizeWatch.
func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	m := info.FullMethod
	switch {
	case adminMethods[m]:
		if err := s.requireAdmin(ss.Context()); err != nil {
			return err
		}
	case m == "/etcdserverpb.Lease/LeaseKeepAlive":
		return h(srv, keepAliveAuthStream{ServerStream: ss, s: s})
	case isForwardedService(m):
		return h(srv, ctxStream{ServerStream: ss, ctx: forwardAuthMetadata(ss.Context())})
	}
	return h(srv, ss)
}

// keepAliveAuthStream checks each keepalive before the handler sees it; a
// refused one ends the stream with the error, as etcd's LeaseRenew does.
type keepAliveAuthStream struct {
	grpc.ServerStream
	s *Server
}

func (k keepAliveAuthStream) RecvMsg(m any) error {
	if err := k.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if r, ok := m.(*pb.LeaseKeepAliveRequest); ok {
		return k.s.checkLeaseRenew(k.Context(), r.ID)
	}
	return nil
}

// ctxStream replaces a stream's context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c ctxStream) Context() context.Context { return c.ctx }
