package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestAuditLog: every auth and membership change is logged once, at info
// level, with the caller's user name and address, and a refused one at
// warn level with its error; no password ever reaches the log.
func TestAuditLog(t *testing.T) {
	cfg := authTestConfig(t)
	core, logs := observer.New(zap.InfoLevel)
	cfg.Logger = zap.New(core)
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const rootPassword, alicePassword, newPassword = "rootpw", "alice-secret-1", "alice-secret-2"
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// Before auth is on: no user.
	_, err := cli.UserAdd(ctx, "root", rootPassword)
	must("root add", err)
	_, err = cli.UserGrantRole(ctx, "root", "root")
	must("root grant", err)
	_, err = cli.UserAdd(ctx, "alice", alicePassword)
	must("alice add", err)
	_, err = cli.RoleAdd(ctx, "app")
	must("role add", err)
	_, err = cli.RoleGrantPermission(ctx, "app", "app/", "app0", 2) // READWRITE
	must("grant permission", err)
	_, err = cli.UserGrantRole(ctx, "alice", "app")
	must("grant role", err)
	_, err = cli.AuthEnable(ctx)
	must("auth enable", err)

	root := userClient(t, cfg, "root", rootPassword)
	alice := userClient(t, cfg, "alice", alicePassword)
	_, err = alice.RoleAdd(ctx, "sneaky")
	wantErr(t, "alice adds a role", err, rpctypes.ErrPermissionDenied)
	_, err = alice.MemberAddAsLearner(ctx, []string{"http://127.0.0.1:1"})
	wantErr(t, "alice adds a member", err, rpctypes.ErrPermissionDenied)
	_, err = root.UserChangePassword(ctx, "alice", newPassword)
	must("change password", err)
	_, err = root.RoleRevokePermission(ctx, "app", "app/", "app0")
	must("revoke permission", err)
	_, err = root.UserRevokeRole(ctx, "alice", "app")
	must("revoke role", err)
	_, err = root.RoleDelete(ctx, "app")
	must("role delete", err)
	_, err = root.UserDelete(ctx, "alice")
	must("user delete", err)
	added, err := root.MemberAddAsLearner(ctx, []string{"http://127.0.0.1:1"})
	must("member add", err)
	_, err = root.MemberRemove(ctx, added.Member.ID)
	must("member remove", err)
	_, err = root.AuthDisable(ctx)
	must("auth disable", err)

	type line struct {
		level             zapcore.Level
		msg, method, user string
		about             map[string]string // request fields
		err               string
	}
	memberID := fmt.Sprintf("%016x", added.Member.ID)
	want := []line{
		{zapcore.InfoLevel, auditAuthMsg, "UserAdd", "", map[string]string{"user-name": "root", "no-password": "false"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "UserGrantRole", "", map[string]string{"user-name": "root", "role-name": "root"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "UserAdd", "", map[string]string{"user-name": "alice"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "RoleAdd", "", map[string]string{"role-name": "app"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "RoleGrantPermission", "", map[string]string{"role-name": "app", "permission-type": "READWRITE", "key": "app/", "range-end": "app0"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "UserGrantRole", "", map[string]string{"user-name": "alice", "role-name": "app"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "AuthEnable", "", nil, ""},
		{zapcore.WarnLevel, auditAuthMsg, "RoleAdd", "alice", map[string]string{"role-name": "sneaky"}, "permission denied"},
		{zapcore.WarnLevel, auditMembershipMsg, "MemberAdd", "alice", map[string]string{"is-learner": "true"}, "permission denied"},
		{zapcore.InfoLevel, auditAuthMsg, "UserChangePassword", "root", map[string]string{"user-name": "alice"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "RoleRevokePermission", "root", map[string]string{"role-name": "app", "key": "app/", "range-end": "app0"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "UserRevokeRole", "root", map[string]string{"user-name": "alice", "role-name": "app"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "RoleDelete", "root", map[string]string{"role-name": "app"}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "UserDelete", "root", map[string]string{"user-name": "alice"}, ""},
		{zapcore.InfoLevel, auditMembershipMsg, "MemberAdd", "root", map[string]string{"is-learner": "true", "member-id": memberID}, ""},
		{zapcore.InfoLevel, auditMembershipMsg, "MemberRemove", "root", map[string]string{"member-id": memberID}, ""},
		{zapcore.InfoLevel, auditAuthMsg, "AuthDisable", "root", nil, ""},
	}
	var got []observer.LoggedEntry
	for _, e := range logs.All() {
		text := fmt.Sprint(e.Message, e.ContextMap())
		for _, pw := range []string{rootPassword, alicePassword, newPassword} {
			if strings.Contains(text, pw) {
				t.Errorf("a password reached the log: %s", text)
			}
		}
		if e.Message == auditAuthMsg || e.Message == auditMembershipMsg {
			got = append(got, e)
		}
	}
	if len(got) != len(want) {
		for _, e := range got {
			t.Logf("%v %s %v", e.Level, e.Message, e.ContextMap())
		}
		t.Fatalf("%d audit lines, want %d", len(got), len(want))
	}
	for i, w := range want {
		e, f := got[i], got[i].ContextMap()
		str := func(k string) string {
			switch v := f[k].(type) {
			case nil:
				return ""
			case []byte:
				return string(v)
			default:
				return fmt.Sprint(v)
			}
		}
		if e.Level != w.level || e.Message != w.msg || str("method") != w.method || str("user") != w.user {
			t.Errorf("line %d: %v %q %v, want %v %q method %s user %q", i, e.Level, e.Message, f, w.level, w.msg, w.method, w.user)
		}
		if addr := str("remote-addr"); !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("line %d (%s): remote-addr %q", i, w.method, addr)
		}
		if _, ok := f["took"]; !ok {
			t.Errorf("line %d (%s): no took field", i, w.method)
		}
		for k, v := range w.about {
			if str(k) != v {
				t.Errorf("line %d (%s): %s = %q, want %q", i, w.method, k, str(k), v)
			}
		}
		if !strings.Contains(str("error"), w.err) || (w.err == "") != (str("error") == "") {
			t.Errorf("line %d (%s): error %q, want %q", i, w.method, str("error"), w.err)
		}
	}
}
