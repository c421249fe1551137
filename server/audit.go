package server

// The audit trail: one log line per request that changes who may do what
// (the Auth service's writes) or who is in the cluster (the Cluster
// service's writes), logged by the member that served the request, with
// who made it. etcd logs these changes at apply time without the caller
// ("added a user", "added member"); MetaStore logs them where the caller is
// known, the API layer:
//
//	{"level":"info","msg":"audit: auth change","method":"UserGrantRole",
//	 "user":"root","remote-addr":"10.0.0.9:51234","auth-enabled":true,
//	 "user-name":"alice","role-name":"app","took":"2.1ms"}
//
// A refused or failed change is logged at warn level with its error, so
// attempts are visible too. Passwords never appear: the request fields are
// picked one by one, and the password fields are never among them. The
// apply-time "audit: membership change applied" line (apply.go) is logged
// by every member.

import (
	"context"
	"fmt"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// Audit log messages.
const (
	auditAuthMsg       = "audit: auth change"
	auditMembershipMsg = "audit: membership change"
	auditClusterMsg    = "audit: cluster change" // leadership moves, downgrades
)

// auditedMethods are the gRPC methods the audit trail records, with the
// message of their line. Reads and logins (Authenticate) are not recorded:
// they change nothing and are far too frequent.
var auditedMethods = map[string]string{
	"/etcdserverpb.Auth/AuthEnable":           auditAuthMsg,
	"/etcdserverpb.Auth/AuthDisable":          auditAuthMsg,
	"/etcdserverpb.Auth/UserAdd":              auditAuthMsg,
	"/etcdserverpb.Auth/UserDelete":           auditAuthMsg,
	"/etcdserverpb.Auth/UserChangePassword":   auditAuthMsg,
	"/etcdserverpb.Auth/UserGrantRole":        auditAuthMsg,
	"/etcdserverpb.Auth/UserRevokeRole":       auditAuthMsg,
	"/etcdserverpb.Auth/RoleAdd":              auditAuthMsg,
	"/etcdserverpb.Auth/RoleDelete":           auditAuthMsg,
	"/etcdserverpb.Auth/RoleGrantPermission":  auditAuthMsg,
	"/etcdserverpb.Auth/RoleRevokePermission": auditAuthMsg,
	"/etcdserverpb.Cluster/MemberAdd":         auditMembershipMsg,
	"/etcdserverpb.Cluster/MemberRemove":      auditMembershipMsg,
	"/etcdserverpb.Cluster/MemberUpdate":      auditMembershipMsg,
	"/etcdserverpb.Cluster/MemberPromote":     auditMembershipMsg,
	"/etcdserverpb.Maintenance/MoveLeader":    auditClusterMsg,
	"/etcdserverpb.Maintenance/Downgrade":     auditClusterMsg,
}

// unaryAudit logs the audited methods' requests after they ran. It sits
// outside the auth interceptor, so a change refused for lack of permission
// is recorded too.
func (s *Server) unaryAudit(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	msg := auditedMethods[info.FullMethod]
	if msg == "" {
		return h(ctx, req)
	}
	// The caller before the request: AuthDisable or a deletion of the
	// caller would hide it afterwards.
	fields := make([]zap.Field, 0, 12)
	fields = append(fields, zap.String("method", info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]))
	fields = append(fields, s.auditCaller(ctx)...)
	start := time.Now()
	resp, err := h(ctx, req)
	fields = append(fields, auditRequestFields(req, resp)...)
	fields = append(fields, zap.Duration("took", time.Since(start)))
	if err != nil {
		s.lg.Warn(msg, append(fields, zap.Error(err))...)
	} else {
		s.lg.Info(msg, fields...)
	}
	return resp, err
}

// auditCaller names who made the request of ctx: the authenticated user
// (empty when auth is off or the client sent no credentials) and the
// client's address.
func (s *Server) auditCaller(ctx context.Context) []zap.Field {
	user := ""
	if ai, err := s.authInfoFromCtx(ctx); err == nil && ai != nil {
		user = ai.Username
	}
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	return []zap.Field{
		zap.String("user", user),
		zap.String("remote-addr", addr),
		zap.Bool("auth-enabled", s.authStore.IsAuthEnabled()),
	}
}

// auditRequestFields picks what a change was about from its request (and,
// for MemberAdd, the ID its response assigned). It never reads a password.
func auditRequestFields(req, resp any) []zap.Field {
	switch r := req.(type) {
	case *pb.AuthUserAddRequest:
		noPassword := r.Options != nil && r.Options.NoPassword
		return []zap.Field{zap.String("user-name", r.Name), zap.Bool("no-password", noPassword)}
	case *pb.AuthUserDeleteRequest:
		return []zap.Field{zap.String("user-name", r.Name)}
	case *pb.AuthUserChangePasswordRequest:
		return []zap.Field{zap.String("user-name", r.Name)}
	case *pb.AuthUserGrantRoleRequest:
		return []zap.Field{zap.String("user-name", r.User), zap.String("role-name", r.Role)}
	case *pb.AuthUserRevokeRoleRequest:
		return []zap.Field{zap.String("user-name", r.Name), zap.String("role-name", r.Role)}
	case *pb.AuthRoleAddRequest:
		return []zap.Field{zap.String("role-name", r.Name)}
	case *pb.AuthRoleDeleteRequest:
		return []zap.Field{zap.String("role-name", r.Role)}
	case *pb.AuthRoleGrantPermissionRequest:
		f := []zap.Field{zap.String("role-name", r.Name)}
		if r.Perm != nil {
			f = append(f, zap.String("permission-type", r.Perm.PermType.String()),
				zap.ByteString("key", r.Perm.Key), zap.ByteString("range-end", r.Perm.RangeEnd))
		}
		return f
	case *pb.AuthRoleRevokePermissionRequest:
		return []zap.Field{zap.String("role-name", r.Role), zap.ByteString("key", r.Key), zap.ByteString("range-end", r.RangeEnd)}
	case *pb.MemberAddRequest:
		f := []zap.Field{zap.Strings("peer-urls", r.PeerURLs), zap.Bool("is-learner", r.IsLearner)}
		if out, ok := resp.(*pb.MemberAddResponse); ok && out != nil && out.Member != nil {
			f = append(f, zap.String("member-id", fmt.Sprintf("%016x", out.Member.ID)))
		}
		return f
	case *pb.MemberRemoveRequest:
		return []zap.Field{zap.String("member-id", fmt.Sprintf("%016x", r.ID))}
	case *pb.MemberUpdateRequest:
		return []zap.Field{zap.String("member-id", fmt.Sprintf("%016x", r.ID)), zap.Strings("peer-urls", r.PeerURLs)}
	case *pb.MemberPromoteRequest:
		return []zap.Field{zap.String("member-id", fmt.Sprintf("%016x", r.ID))}
	case *pb.MoveLeaderRequest:
		return []zap.Field{zap.String("target-member-id", fmt.Sprintf("%016x", r.TargetID))}
	case *pb.DowngradeRequest:
		return []zap.Field{zap.String("action", r.Action.String()), zap.String("version", r.Version)}
	}
	return nil
}
