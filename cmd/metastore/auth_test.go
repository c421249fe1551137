package main

import (
	"strings"
	"testing"
)

// TestEtcdctlAuth drives the real etcdctl's user, role and auth command
// groups against a metastore process, then checks that --user is enforced.
func TestEtcdctlAuth(t *testing.T) {
	c := newCluster(t, 1, "--bcrypt-cost", "4", "--auth-token", "simple", "--auth-token-ttl", "60")
	ep := c.endpoints()
	run := func(stdin string, args ...string) string { return mustEtcdctl(t, ep, stdin, args...) }
	fail := func(want string, args ...string) {
		t.Helper()
		out, err := etcdctl(t, ep, "", args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("etcdctl %s: %v %q, want an error containing %q", strings.Join(args, " "), err, out, want)
		}
	}
	expect := func(out, want string) {
		t.Helper()
		if !strings.Contains(out, want) {
			t.Fatalf("got %q, want it to contain %q", out, want)
		}
	}

	fail("root user does not exist", "auth", "enable")
	expect(run("", "user", "add", "root:rootpw"), "User root created")
	expect(run("", "user", "grant-role", "root", "root"), "Role root is granted to user root")
	expect(run("", "user", "add", "alice:alicepw"), "User alice created")
	expect(run("", "role", "add", "app"), "Role app created")
	expect(run("", "role", "grant-permission", "app", "readwrite", "app/", "--prefix"), "Role app updated")
	expect(run("", "user", "grant-role", "alice", "app"), "Role app is granted to user alice")
	expect(run("", "role", "get", "app"), "[app/, app0) (prefix app/)")
	expect(run("", "user", "list"), "alice\nroot")
	expect(run("", "auth", "enable"), "Authentication Enabled")

	root := "--user=root:rootpw"
	alice := "--user=alice:alicepw"
	expect(run("", root, "auth", "status"), "Authentication Status: true")
	fail("user name is empty", "put", "app/x", "1")
	fail("authentication failed", "--user=alice:wrong", "get", "app/x")
	expect(run("", alice, "put", "app/x", "1"), "OK")
	expect(run("", alice, "get", "app/x"), "app/x\n1")
	fail("permission denied", alice, "put", "other", "1")
	fail("permission denied", alice, "get", "other")
	fail("permission denied", alice, "user", "list")
	fail("permission denied", alice, "auth", "disable")
	expect(run("", alice, "user", "get", "alice"), "Roles: app")
	expect(run("", root, "user", "get", "alice"), "Roles: app")
	expect(run("", root, "role", "revoke-permission", "app", "app/", "--prefix"), "Permission of range [app/, app0) is revoked from role app")
	fail("permission denied", alice, "put", "app/x", "2")
	fail("permission denied", alice, "defrag")
	expect(run("newpw\n", root, "user", "passwd", "alice", "--interactive=false"), "Password updated")
	fail("authentication failed", alice, "get", "app/x")
	expect(run("", root, "user", "revoke-role", "alice", "app"), "Role app is revoked from user alice")
	expect(run("", root, "role", "delete", "app"), "Role app deleted")
	expect(run("", root, "user", "delete", "alice"), "User alice deleted")
	fail("invalid auth management", root, "user", "delete", "root")
	expect(run("", root, "auth", "disable"), "Authentication Disabled")
	expect(run("", "put", "k", "v"), "OK")
}
