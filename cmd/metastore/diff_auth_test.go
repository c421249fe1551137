package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

// authTarget is one server of TestDifferentialAuth: raw Auth, KV and
// Maintenance clients, and the tokens its users got from it.
type authTarget struct {
	name   string
	auth   pb.AuthClient
	kv     pb.KVClient
	mt     pb.MaintenanceClient
	tokens map[string]string // user -> token issued by this server
}

func newAuthTarget(t *testing.T, name, url string) *authTarget {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	conn := cli.ActiveConnection()
	return &authTarget{name: name, auth: pb.NewAuthClient(conn), kv: pb.NewKVClient(conn), mt: pb.NewMaintenanceClient(conn), tokens: map[string]string{}}
}

// as returns ctx carrying user's token on this server ("" for none).
func (tg *authTarget) as(ctx context.Context, user string) context.Context {
	if user == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, tg.tokens[user])
}

// authStep is one request, sent as user (by the token user got from the
// same server; "" sends none).
type authStep struct {
	user string
	desc string
	call func(ctx context.Context, tg *authTarget) (proto.Message, error)
}

func (s authStep) run(tg *authTarget) diffResult {
	ctx, cancel := context.WithTimeout(context.Background(), diffOpTimeout)
	defer cancel()
	resp, err := s.call(tg.as(ctx, s.user), tg)
	if ar, ok := resp.(*pb.AuthenticateResponse); ok && err == nil {
		// Tokens differ by construction: keep it, compare the rest.
		name := s.desc[len("Authenticate "):]
		tg.tokens[name] = ar.Token
		ar.Token = "<token>"
	}
	return respResult(resp, err)
}

// TestDifferentialAuth runs the same auth management and permission checks
// against real etcd and MetaStore: users, roles, grants and revocations,
// auth enable/disable, authentication, each error case, and a permission
// matrix of KV requests by users holding different roles. Every answer,
// errors included (gRPC code and message), must be the same.
func TestDifferentialAuth(t *testing.T) {
	t.Parallel()
	etcd := startEtcd(t)
	c := newCluster(t, 1, "--bcrypt-cost", "4") // while etcd starts
	etcd.waitReady()
	ref := newAuthTarget(t, "etcd", etcd.clientURL)
	sut := newAuthTarget(t, "metastore", c.members[0].clientURL)

	b := func(s string) []byte { return []byte(s) }
	userAdd := func(as, name, pw string, noPassword bool) authStep {
		return authStep{as, fmt.Sprintf("UserAdd %s nopw=%v", name, noPassword), func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.UserAdd(ctx, &pb.AuthUserAddRequest{Name: name, Password: pw, Options: &authpb.UserAddOptions{NoPassword: noPassword}})
		}}
	}
	userDelete := func(as, name string) authStep {
		return authStep{as, "UserDelete " + name, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.UserDelete(ctx, &pb.AuthUserDeleteRequest{Name: name})
		}}
	}
	userGet := func(as, name string) authStep {
		return authStep{as, "UserGet " + name, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.UserGet(ctx, &pb.AuthUserGetRequest{Name: name})
		}}
	}
	userList := func(as string) authStep {
		return authStep{as, "UserList", func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.UserList(ctx, &pb.AuthUserListRequest{})
		}}
	}
	passwd := func(as, name, pw string) authStep {
		return authStep{as, "UserChangePassword " + name, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.UserChangePassword(ctx, &pb.AuthUserChangePasswordRequest{Name: name, Password: pw})
		}}
	}
	grantRole := func(as, user, role string) authStep {
		return authStep{as, "UserGrantRole " + user + " " + role, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: user, Role: role})
		}}
	}
	revokeRole := func(as, user, role string) authStep {
		return authStep{as, "UserRevokeRole " + user + " " + role, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.UserRevokeRole(ctx, &pb.AuthUserRevokeRoleRequest{Name: user, Role: role})
		}}
	}
	roleAdd := func(as, name string) authStep {
		return authStep{as, "RoleAdd " + name, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: name})
		}}
	}
	roleDelete := func(as, name string) authStep {
		return authStep{as, "RoleDelete " + name, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.RoleDelete(ctx, &pb.AuthRoleDeleteRequest{Role: name})
		}}
	}
	roleGet := func(as, name string) authStep {
		return authStep{as, "RoleGet " + name, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.RoleGet(ctx, &pb.AuthRoleGetRequest{Role: name})
		}}
	}
	roleList := func(as string) authStep {
		return authStep{as, "RoleList", func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.RoleList(ctx, &pb.AuthRoleListRequest{})
		}}
	}
	grantPerm := func(as, role string, typ authpb.Permission_Type, key, end string) authStep {
		return authStep{as, fmt.Sprintf("RoleGrantPermission %s %v [%q, %q)", role, typ, key, end), func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: role, Perm: &authpb.Permission{PermType: typ, Key: b(key), RangeEnd: b(end)}})
		}}
	}
	revokePerm := func(as, role, key, end string) authStep {
		return authStep{as, fmt.Sprintf("RoleRevokePermission %s [%q, %q)", role, key, end), func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.RoleRevokePermission(ctx, &pb.AuthRoleRevokePermissionRequest{Role: role, Key: b(key), RangeEnd: b(end)})
		}}
	}
	authEnable := func(as string) authStep {
		return authStep{as, "AuthEnable", func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.AuthEnable(ctx, &pb.AuthEnableRequest{})
		}}
	}
	authDisable := func(as string) authStep {
		return authStep{as, "AuthDisable", func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.AuthDisable(ctx, &pb.AuthDisableRequest{})
		}}
	}
	authStatus := func(as string) authStep {
		return authStep{as, "AuthStatus", func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.AuthStatus(ctx, &pb.AuthStatusRequest{})
		}}
	}
	login := func(name, pw string) authStep {
		return authStep{"", "Authenticate " + name, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: name, Password: pw})
		}}
	}
	put := func(as, key string, prevKV bool) authStep {
		return authStep{as, fmt.Sprintf("Put %q prev_kv=%v", key, prevKV), func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.kv.Put(ctx, &pb.PutRequest{Key: b(key), Value: b("v"), PrevKv: prevKV})
		}}
	}
	get := func(as, key, end string) authStep {
		return authStep{as, fmt.Sprintf("Range [%q, %q)", key, end), func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.kv.Range(ctx, &pb.RangeRequest{Key: b(key), RangeEnd: b(end)})
		}}
	}
	del := func(as, key, end string) authStep {
		return authStep{as, fmt.Sprintf("DeleteRange [%q, %q)", key, end), func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: b(key), RangeEnd: b(end)})
		}}
	}
	txn := func(as, desc string, r *pb.TxnRequest) authStep {
		return authStep{as, "Txn " + desc, func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.kv.Txn(ctx, proto.Clone(r).(*pb.TxnRequest))
		}}
	}
	compact := func(as string, rev int64) authStep {
		return authStep{as, fmt.Sprintf("Compact %d", rev), func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			return tg.kv.Compact(ctx, &pb.CompactionRequest{Revision: rev})
		}}
	}
	hashKV := func(as string) authStep {
		return authStep{as, "HashKV", func(ctx context.Context, tg *authTarget) (proto.Message, error) {
			r, err := tg.mt.HashKV(ctx, &pb.HashKVRequest{})
			if r != nil {
				r.Hash = 0 // the hash functions differ; the answer's shape must not
				r.HashRevision = 0
			}
			return r, err
		}}
	}
	putOp := func(key string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: b(key), Value: b("t")}}}
	}
	rangeOp := func(key string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: b(key)}}}
	}
	cmpVersion := func(key string) []*pb.Compare {
		return []*pb.Compare{{Key: b(key), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}}}
	}
	const R, W, RW = authpb.READ, authpb.WRITE, authpb.READWRITE

	steps := []authStep{
		// Before auth: management errors.
		authEnable(""),
		userAdd("", "", "pw", false),
		userAdd("", "root", "rootpw", false),
		userAdd("", "root", "rootpw", false),
		authEnable(""), // root lacks the root role
		grantRole("", "root", "root"),
		grantRole("", "root", "nosuchrole"),
		grantRole("", "nosuchuser", "root"),
		roleAdd("", "app"),
		roleAdd("", "app"),
		roleAdd("", ""),
		roleAdd("", "reader"),
		grantPerm("", "app", RW, "a/", "a0"),
		grantPerm("", "app", R, "b", ""),
		grantPerm("", "app", W, "c", "\x00"),
		grantPerm("", "app", R, "a/", "a0"), // replaces the READWRITE
		grantPerm("", "app", RW, "a/", "a0"),
		grantPerm("", "nosuchrole", R, "x", ""),
		grantPerm("", "reader", R, "", "\x00"),
		roleGet("", "app"),
		roleGet("", "nosuchrole"),
		roleGet("", "root"),
		userAdd("", "alice", "alicepw", false),
		userAdd("", "bob", "", true),
		userAdd("", "carol", "carolpw", false),
		grantRole("", "alice", "app"),
		grantRole("", "alice", "app"),
		grantRole("", "carol", "reader"),
		userGet("", "alice"),
		userGet("", "nosuchuser"),
		userList(""),
		roleList(""),
		put("", "a/seed", false),
		put("", "b", false),
		put("", "c", false),
		authStatus(""),
		authEnable(""),
		authEnable(""), // already on: no error, as etcd
		authStatus(""),

		// Authentication.
		put("", "a/x", false),
		get("", "a/x", ""),
		login("alice", "wrong"),
		login("nosuchuser", "pw"),
		login("bob", ""),
		login("root", "rootpw"),
		login("alice", "alicepw"),
		login("carol", "carolpw"),
		authStatus("alice"),

		// The permission matrix: alice (app), carol (reader on everything), root.
		put("alice", "a/x", false),
		put("alice", "a/x", true),
		put("alice", "b", false),
		put("alice", "c", false),
		put("alice", "c", true), // prev_kv needs READ on c
		put("alice", "zz", false),
		put("alice", "d", false),
		get("alice", "a/", "a0"),
		get("alice", "a/x", ""),
		get("alice", "b", ""),
		get("alice", "c", ""),
		get("alice", "a", "b"),
		get("alice", "", "\x00"),
		get("alice", "", ""), // validation before permission
		put("alice", "", false),
		txn("alice", "read-only: range of an empty key", &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp("")}}),
		del("alice", "a/x", ""),
		del("alice", "a/", "a1"),
		del("alice", "c", "d"),
		del("alice", "b", ""),
		txn("alice", "compare b (READ), put a/t", &pb.TxnRequest{Compare: cmpVersion("b"), Success: []*pb.RequestOp{putOp("a/t")}}),
		txn("alice", "compare c (no READ)", &pb.TxnRequest{Compare: cmpVersion("c"), Success: []*pb.RequestOp{putOp("a/t")}}),
		txn("alice", "put b in the failure branch", &pb.TxnRequest{Compare: cmpVersion("b"), Success: []*pb.RequestOp{putOp("a/t")}, Failure: []*pb.RequestOp{putOp("b")}}),
		txn("alice", "read-only: range b and a/t", &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp("b"), rangeOp("a/t")}}),
		txn("alice", "read-only: range c", &pb.TxnRequest{Success: []*pb.RequestOp{rangeOp("c")}}),
		txn("alice", "nested put outside", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{putOp("zzz"), putOp("q")}}}}}}),
		put("carol", "a/x", false),
		get("carol", "", "\x00"),
		get("carol", "a/", "a0"),
		userList("alice"),
		userGet("alice", "alice"),
		userGet("alice", "carol"),
		roleGet("alice", "app"),
		roleGet("alice", "reader"),
		roleAdd("alice", "sneaky"),
		grantRole("alice", "alice", "root"),
		authDisable("alice"),
		compact("alice", 1),
		hashKV("alice"),
		hashKV("root"),
		put("root", "anything", false),
		get("root", "", "\x00"),

		// Revocations.
		revokePerm("root", "app", "a/", "a0"),
		revokePerm("root", "app", "a/", "a0"),
		revokePerm("root", "nosuchrole", "a/", "a0"),
		roleGet("root", "app"),
		put("alice", "a/x", false),
		get("alice", "b", ""),
		revokeRole("root", "alice", "app"),
		revokeRole("root", "alice", "app"),
		revokeRole("root", "nosuchuser", "app"),
		get("alice", "b", ""),
		userGet("root", "alice"),
		passwd("root", "alice", "newpw"),
		passwd("root", "nosuchuser", "pw"),
		login("alice", "alicepw"),
		login("alice", "newpw"),
		get("alice", "b", ""),

		// What root may not do while auth is on.
		userDelete("root", "root"),
		revokeRole("root", "root", "root"),
		roleDelete("root", "root"),
		roleDelete("root", "nosuchrole"),
		userDelete("root", "nosuchuser"),
		roleDelete("root", "app"),
		userGet("root", "alice"), // the deleted role is gone from alice too
		userDelete("root", "alice"),
		get("alice", "b", ""), // a deleted user's token
		compact("root", 2),
		authStatus("root"),
		authDisable("root"),
		authStatus(""),
		put("", "after", false),
		userList(""),
		roleList(""),
	}
	for i, s := range steps {
		a, b := s.run(ref), s.run(sut)
		if !a.matches(b) {
			t.Fatalf("step %d: %s as %q differs:\n%s", i, s.desc, s.user, diffReport(a, b))
		}
		if *diffLog {
			t.Logf("step %d: %s as %q\n=> %s", i, s.desc, s.user, a)
		}
	}
}
