package auth

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func wantErr(t *testing.T, name string, err, want error) {
	t.Helper()
	if want == nil && err != nil || !errors.Is(err, want) {
		t.Errorf("%s: got %v, want %v", name, err, want)
	}
}

func TestAuthEnableRootRules(t *testing.T) {
	e := newTestEnv(t, "simple")
	wantErr(t, "enable without root", e.s.AuthEnable(e.be), ErrRootUserNotExist)
	e.userAdd("root", "pw")
	wantErr(t, "enable without root role", e.s.AuthEnable(e.be), ErrRootRoleNotExist)
	e.grantRole("root", "root") // root role need not exist
	rev := e.s.Revision()
	wantErr(t, "enable", e.s.AuthEnable(e.be), nil)
	if e.s.Revision() != rev || !e.s.IsAuthEnabled() {
		t.Fatalf("enable changed revision %d -> %d or not enabled", rev, e.s.Revision())
	}
	wantErr(t, "enable twice", e.s.AuthEnable(e.be), nil)

	_, err := e.s.UserDelete(e.be, &pb.AuthUserDeleteRequest{Name: "root"})
	wantErr(t, "delete root", err, ErrInvalidAuthMgmt)
	_, err = e.s.UserRevokeRole(e.be, &pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"})
	wantErr(t, "revoke root from root", err, ErrInvalidAuthMgmt)
	e.roleAdd("root")
	_, err = e.s.RoleDelete(e.be, &pb.AuthRoleDeleteRequest{Role: "root"})
	wantErr(t, "delete root role", err, ErrInvalidAuthMgmt)

	e.s.AuthDisable(e.be)
	if e.s.IsAuthEnabled() || e.s.Revision() != rev+2 {
		t.Fatalf("disable: enabled=%v rev=%d want %d", e.s.IsAuthEnabled(), e.s.Revision(), rev+2)
	}
	e.s.AuthDisable(e.be) // no-op
	if e.s.Revision() != rev+2 {
		t.Fatal("second disable bumped revision")
	}
	// Disabled: root rules do not apply.
	e.ok(e.s.UserRevokeRole(e.be, &pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"}))
	e.ok(e.s.RoleDelete(e.be, &pb.AuthRoleDeleteRequest{Role: "root"}))
	e.ok(e.s.UserDelete(e.be, &pb.AuthUserDeleteRequest{Name: "root"}))
}

func TestRPCErrors(t *testing.T) {
	e := newTestEnv(t, "simple")
	e.userAdd("alice", "pw")
	e.roleAdd("r")
	perm := &authpb.Permission{PermType: authpb.READ, Key: []byte("a"), RangeEnd: []byte("b")}
	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"useradd empty", func() error { _, err := e.s.UserAdd(e.be, &pb.AuthUserAddRequest{}); return err }, ErrUserEmpty},
		{"useradd exists", func() error { _, err := e.s.UserAdd(e.be, &pb.AuthUserAddRequest{Name: "alice"}); return err }, ErrUserAlreadyExist},
		{"useradd bad hash", func() error {
			_, err := e.s.UserAdd(e.be, &pb.AuthUserAddRequest{Name: "x", HashedPassword: "!!"})
			return err
		}, ErrNoPasswordUser},
		{"userdelete missing", func() error { _, err := e.s.UserDelete(e.be, &pb.AuthUserDeleteRequest{Name: "bob"}); return err }, ErrUserNotFound},
		{"chpw missing", func() error {
			_, err := e.s.UserChangePassword(e.be, &pb.AuthUserChangePasswordRequest{Name: "bob"})
			return err
		}, ErrUserNotFound},
		{"chpw bad hash", func() error {
			_, err := e.s.UserChangePassword(e.be, &pb.AuthUserChangePasswordRequest{Name: "alice", HashedPassword: "!!"})
			return err
		}, ErrNoPasswordUser},
		{"grant user missing", func() error {
			_, err := e.s.UserGrantRole(e.be, &pb.AuthUserGrantRoleRequest{User: "bob", Role: "r"})
			return err
		}, ErrUserNotFound},
		{"grant role missing", func() error {
			_, err := e.s.UserGrantRole(e.be, &pb.AuthUserGrantRoleRequest{User: "alice", Role: "nope"})
			return err
		}, ErrRoleNotFound},
		{"revoke user missing", func() error {
			_, err := e.s.UserRevokeRole(e.be, &pb.AuthUserRevokeRoleRequest{Name: "bob", Role: "r"})
			return err
		}, ErrUserNotFound},
		{"revoke not granted", func() error {
			_, err := e.s.UserRevokeRole(e.be, &pb.AuthUserRevokeRoleRequest{Name: "alice", Role: "r"})
			return err
		}, ErrRoleNotGranted},
		{"userget missing", func() error { _, err := e.s.UserGet(&pb.AuthUserGetRequest{Name: "bob"}); return err }, ErrUserNotFound},
		{"roleadd empty", func() error { _, err := e.s.RoleAdd(e.be, &pb.AuthRoleAddRequest{}); return err }, ErrRoleEmpty},
		{"roleadd exists", func() error { _, err := e.s.RoleAdd(e.be, &pb.AuthRoleAddRequest{Name: "r"}); return err }, ErrRoleAlreadyExist},
		{"roleget missing", func() error { _, err := e.s.RoleGet(&pb.AuthRoleGetRequest{Role: "nope"}); return err }, ErrRoleNotFound},
		{"roledelete missing", func() error { _, err := e.s.RoleDelete(e.be, &pb.AuthRoleDeleteRequest{Role: "nope"}); return err }, ErrRoleNotFound},
		{"grantperm nil", func() error {
			_, err := e.s.RoleGrantPermission(e.be, &pb.AuthRoleGrantPermissionRequest{Name: "r"})
			return err
		}, ErrPermissionNotGiven},
		{"grantperm empty key", func() error {
			_, err := e.s.RoleGrantPermission(e.be, &pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{}})
			return err
		}, ErrInvalidAuthMgmt},
		{"grantperm end<key", func() error {
			_, err := e.s.RoleGrantPermission(e.be, &pb.AuthRoleGrantPermissionRequest{Name: "r",
				Perm: &authpb.Permission{Key: []byte("b"), RangeEnd: []byte("a")}})
			return err
		}, ErrInvalidAuthMgmt},
		{"grantperm role missing", func() error {
			_, err := e.s.RoleGrantPermission(e.be, &pb.AuthRoleGrantPermissionRequest{Name: "nope", Perm: perm})
			return err
		}, ErrRoleNotFound},
		{"revokeperm role missing", func() error {
			_, err := e.s.RoleRevokePermission(e.be, &pb.AuthRoleRevokePermissionRequest{Role: "nope", Key: []byte("a")})
			return err
		}, ErrRoleNotFound},
		{"revokeperm not granted", func() error {
			_, err := e.s.RoleRevokePermission(e.be, &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("a")})
			return err
		}, ErrPermissionNotGranted},
	} {
		rev := e.s.Revision()
		before := len(e.be.kv)
		wantErr(t, tc.name, tc.call(), tc.want)
		if e.s.Revision() != rev || len(e.be.kv) != before {
			t.Errorf("%s: failed call changed state", tc.name)
		}
	}
}

func TestRPCsAndPersistence(t *testing.T) {
	e := newTestEnv(t, "simple")
	rev := e.s.Revision()
	if rev != 1 {
		t.Fatalf("fresh revision %d, want 1", rev)
	}
	e.userAdd("bob", "pw")
	e.userAdd("alice", "pw")
	e.ok(e.s.UserAdd(e.be, &pb.AuthUserAddRequest{Name: "svc", Options: &authpb.UserAddOptions{NoPassword: true}}))
	e.roleAdd("w")
	e.roleAdd("r")
	e.grantRole("alice", "w")
	e.grantRole("alice", "r")
	e.grantRole("alice", "r") // duplicate: no-op, no revision bump
	e.grantPerm("r", authpb.READ, "b", "")
	e.grantPerm("r", authpb.READ, "a", "c")
	e.grantPerm("r", authpb.WRITE, "a", "c")  // updates the type in place
	if got := e.s.Revision(); got != rev+10 { // 10 changes; the duplicate grant is not one
		t.Fatalf("revision %d, want %d", got, rev+10)
	}
	if got := must(t)(e.s.UserGet(&pb.AuthUserGetRequest{Name: "alice"})).(*pb.AuthUserGetResponse).Roles; !reflect.DeepEqual(got, []string{"r", "w"}) {
		t.Fatalf("alice roles %v", got)
	}
	if got := must(t)(e.s.UserList(nil)).(*pb.AuthUserListResponse).Users; !reflect.DeepEqual(got, []string{"alice", "bob", "svc"}) {
		t.Fatalf("users %v", got)
	}
	if got := must(t)(e.s.RoleList(nil)).(*pb.AuthRoleListResponse).Roles; !reflect.DeepEqual(got, []string{"r", "w"}) {
		t.Fatalf("roles %v", got)
	}
	perms := must(t)(e.s.RoleGet(&pb.AuthRoleGetRequest{Role: "r"})).(*pb.AuthRoleGetResponse).Perm
	if len(perms) != 2 || string(perms[0].Key) != "a" || perms[0].PermType != authpb.WRITE || string(perms[1].Key) != "b" {
		t.Fatalf("role r perms %v", perms)
	}
	e.roleAdd("root")
	if got := must(t)(e.s.RoleGet(&pb.AuthRoleGetRequest{Role: "root"})).(*pb.AuthRoleGetResponse).Perm; len(got) != 1 || !reflect.DeepEqual(*got[0], rootPerm) {
		t.Fatalf("root perms %v", got)
	}

	// Reload from the persisted bytes: same state.
	s2, err := NewStore(e.be, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s2.Revision() != e.s.Revision() {
		t.Fatalf("reloaded revision %d, want %d", s2.Revision(), e.s.Revision())
	}
	for _, name := range []string{"alice", "bob", "svc"} {
		a, b := e.s.snap.Load().users[name], s2.snap.Load().users[name]
		if !reflect.DeepEqual(a.user, b.user) || !reflect.DeepEqual(a.perms, b.perms) {
			t.Fatalf("user %s differs after reload", name)
		}
	}

	// RoleDelete strips the role from users; revokes work; deletes persist.
	e.ok(e.s.RoleDelete(e.be, &pb.AuthRoleDeleteRequest{Role: "w"}))
	if e.s.HasRole("alice", "w") || !e.s.HasRole("alice", "r") {
		t.Fatal("role w not stripped")
	}
	e.ok(e.s.RoleRevokePermission(e.be, &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("b")}))
	e.ok(e.s.UserRevokeRole(e.be, &pb.AuthUserRevokeRoleRequest{Name: "alice", Role: "r"}))
	e.ok(e.s.UserDelete(e.be, &pb.AuthUserDeleteRequest{Name: "bob"}))
	if _, ok := e.be.kv["auth/user/bob"]; ok {
		t.Fatal("bob still persisted")
	}
	if _, ok := e.be.kv["auth/role/w"]; ok {
		t.Fatal("role w still persisted")
	}
	s3, err := NewStore(e.be, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s3.HasRole("alice", "r") || s3.Revision() != e.s.Revision() {
		t.Fatal("reload after deletes differs")
	}
}

// must adapts a (value, error) call for inline use in tests.
func must(t *testing.T) func(any, error) any {
	return func(v any, err error) any {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func TestAuthenticate(t *testing.T) {
	e := newTestEnv(t, "simple")
	e.userAdd("alice", "secret")
	e.ok(e.s.UserAdd(e.be, &pb.AuthUserAddRequest{Name: "svc", Options: &authpb.UserAddOptions{NoPassword: true}}))
	_, err := e.s.CheckPassword("alice", "secret")
	wantErr(t, "check disabled", err, ErrAuthNotEnabled)
	_, err = e.s.Authenticate(context.Background(), &pb.InternalAuthenticateRequest{Name: "alice"}, 1)
	wantErr(t, "authenticate disabled", err, ErrAuthNotEnabled)
	e.enableWithRoot()

	_, err = e.s.CheckPassword("alice", "wrong")
	wantErr(t, "wrong password", err, ErrAuthFailed)
	_, err = e.s.CheckPassword("nobody", "secret")
	wantErr(t, "unknown user", err, ErrAuthFailed)
	_, err = e.s.CheckPassword("svc", "")
	wantErr(t, "no password user", err, ErrNoPasswordUser)
	_, err = e.s.Authenticate(context.Background(), &pb.InternalAuthenticateRequest{Name: "svc"}, 1)
	wantErr(t, "authenticate no password user", err, ErrAuthFailed)

	rev, err := e.s.CheckPassword("alice", "secret")
	if err != nil || rev != e.s.Revision() {
		t.Fatalf("check: %d %v", rev, err)
	}
	token := e.login("alice", 7)
	ai, err := e.s.AuthInfoFromToken(context.Background(), token)
	if err != nil || ai.Username != "alice" || ai.Revision != e.s.Revision() {
		t.Fatalf("token info %+v %v", ai, err)
	}
	_, err = e.s.AuthInfoFromToken(context.Background(), "nope.7")
	wantErr(t, "unknown token", err, ErrInvalidAuthToken)

	// Changing the password invalidates alice's tokens.
	r := &pb.AuthUserChangePasswordRequest{Name: "alice", Password: "new"}
	if err := e.s.PrepareUserChangePassword(r); err != nil || r.Password != "" || r.HashedPassword == "" {
		t.Fatalf("prepare: %v %+v", err, r)
	}
	e.ok(e.s.UserChangePassword(e.be, r))
	_, err = e.s.AuthInfoFromToken(context.Background(), token)
	wantErr(t, "token after password change", err, ErrInvalidAuthToken)
	_, err = e.s.CheckPassword("alice", "secret")
	wantErr(t, "old password", err, ErrAuthFailed)
	if _, err := e.s.CheckPassword("alice", "new"); err != nil {
		t.Fatal(err)
	}
	// Disabling drops every token.
	token = e.login("alice", 8)
	e.s.AuthDisable(e.be)
	e.enableAgain()
	_, err = e.s.AuthInfoFromToken(context.Background(), token)
	wantErr(t, "token after disable", err, ErrInvalidAuthToken)
}

func (e *testEnv) login(user string, index uint64) string {
	e.t.Helper()
	prefix, err := e.s.GenTokenPrefix()
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.s.Authenticate(context.Background(), &pb.InternalAuthenticateRequest{Name: user, SimpleToken: prefix}, index)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Token
}

func (e *testEnv) enableAgain() {
	e.t.Helper()
	if err := e.s.AuthEnable(e.be); err != nil {
		e.t.Fatal(err)
	}
}

func TestGRPCError(t *testing.T) {
	for _, m := range grpcErrors {
		got, ok := GRPCError(m.err)
		if !ok || got != m.grpc {
			t.Errorf("%v -> %v", m.err, got)
		}
		if _, ok := m.grpc.(rpctypes.EtcdError); ok {
			t.Errorf("%v maps to a client-side error, want a gRPC status", m.err)
		}
	}
	if _, ok := GRPCError(ErrNoPasswordUser); ok {
		t.Error("ErrNoPasswordUser should be unmapped")
	}
}

// TestRevisionRacesRevoke checks that a request authorized at revision R is
// judged by the permissions of revision R or fails ErrAuthOldRevision,
// while a writer toggles the permission.
func TestRevisionRacesRevoke(t *testing.T) {
	e := newTestEnv(t, "simple")
	e.userAdd("alice", "pw")
	e.roleAdd("r")
	e.grantRole("alice", "r")
	e.enableWithRoot()

	var granted sync.Map // revision -> bool
	granted.Store(e.s.Revision(), false)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var checks, old atomic.Int64
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ai := &AuthInfo{Username: "alice", Revision: e.s.Revision()}
				err := e.s.IsPutPermitted(ai, []byte("k"))
				checks.Add(1)
				if errors.Is(err, ErrAuthOldRevision) {
					old.Add(1)
					continue
				}
				g, ok := granted.Load(ai.Revision)
				if !ok {
					t.Errorf("unknown revision %d", ai.Revision)
					return
				}
				if (err == nil) != g.(bool) {
					t.Errorf("rev %d: err %v, granted %v", ai.Revision, err, g)
					return
				}
			}
		}()
	}
	for i := 0; i < 300; i++ {
		next := e.s.Revision() + 1
		if i%2 == 0 {
			granted.Store(next, true)
			e.ok(e.s.RoleGrantPermission(e.be, &pb.AuthRoleGrantPermissionRequest{Name: "r",
				Perm: &authpb.Permission{PermType: authpb.WRITE, Key: []byte("k")}}))
		} else {
			granted.Store(next, false)
			e.ok(e.s.RoleRevokePermission(e.be, &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("k")}))
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d checks, %d old revision", checks.Load(), old.Load())
}
