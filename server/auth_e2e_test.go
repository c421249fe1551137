package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// authTestConfig is inProcessConfig with a cheap bcrypt cost.
func authTestConfig(t *testing.T) Config {
	cfg := inProcessConfig(t, t.TempDir())
	cfg.BcryptCost = bcrypt.MinCost
	return cfg
}

// enableAuth creates root (password "rootpw") and turns auth on.
func enableAuth(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	ctx := context.Background()
	if _, err := cli.UserAdd(ctx, "root", "rootpw"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
}

// userClient connects as user with password pw.
func userClient(t *testing.T, cfg Config, user, pw string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.AdvertiseClientURLs, Username: user, Password: pw, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// wantErr fails unless err is want (an rpctypes error, compared as clients
// do, by its text).
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: %v, want success", what, err)
		}
		return
	}
	if err == nil || rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

func TestAuthEnableRequiresRoot(t *testing.T) {
	cfg := authTestConfig(t)
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	ctx := context.Background()

	_, err := cli.AuthEnable(ctx)
	wantErr(t, "enable without root", err, rpctypes.ErrRootUserNotExist)
	if _, err := cli.UserAdd(ctx, "root", "rootpw"); err != nil {
		t.Fatal(err)
	}
	_, err = cli.AuthEnable(ctx)
	wantErr(t, "enable without root role", err, rpctypes.ErrRootRoleNotExist)
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserAdd(ctx, "alice", "alicepw"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}

	// The client without credentials is now nobody.
	_, err = cli.Get(ctx, "k")
	wantErr(t, "get without user", err, rpctypes.ErrUserEmpty)
	_, err = cli.Put(ctx, "k", "v")
	wantErr(t, "put without user", err, rpctypes.ErrUserEmpty)
	_, err = cli.AuthDisable(ctx)
	wantErr(t, "disable without user", err, rpctypes.ErrUserEmpty)

	_, err = clientv3.New(clientv3.Config{Endpoints: cfg.AdvertiseClientURLs, Username: "root", Password: "wrong", DialTimeout: 5 * time.Second})
	wantErr(t, "wrong password", err, rpctypes.ErrAuthFailed)

	alice := userClient(t, cfg, "alice", "alicepw")
	_, err = alice.AuthDisable(ctx)
	wantErr(t, "disable as alice", err, rpctypes.ErrPermissionDenied)
	_, err = alice.AuthStatus(ctx)
	wantErr(t, "status as alice", err, rpctypes.ErrPermissionDenied)

	root := userClient(t, cfg, "root", "rootpw")
	st, err := root.AuthStatus(ctx)
	if err != nil || !st.Enabled || st.AuthRevision == 0 {
		t.Fatalf("status as root: %+v %v", st, err)
	}
	if _, err := root.AuthDisable(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put after disable: %v", err)
	}
}

func TestAuthUserRoleManagement(t *testing.T) {
	cfg := authTestConfig(t)
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	ctx := context.Background()
	enableAuth(t, cli)
	root := userClient(t, cfg, "root", "rootpw")

	for _, u := range []string{"bob", "alice"} {
		if _, err := root.UserAdd(ctx, u, u+"pw"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := root.UserAdd(ctx, "bob", "x")
	wantErr(t, "duplicate user", err, rpctypes.ErrUserAlreadyExist)
	_, err = root.UserAdd(ctx, "", "x")
	wantErr(t, "empty user", err, rpctypes.ErrUserEmpty)
	_, err = root.UserGet(ctx, "carol")
	wantErr(t, "get missing user", err, rpctypes.ErrUserNotFound)
	if _, err := root.RoleAdd(ctx, "reader"); err != nil {
		t.Fatal(err)
	}
	if _, err := root.RoleAdd(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	_, err = root.RoleAdd(ctx, "reader")
	wantErr(t, "duplicate role", err, rpctypes.ErrRoleAlreadyExist)
	_, err = root.RoleGet(ctx, "nope")
	wantErr(t, "get missing role", err, rpctypes.ErrRoleNotFound)
	_, err = root.UserGrantRole(ctx, "bob", "nope")
	wantErr(t, "grant missing role", err, rpctypes.ErrRoleNotFound)
	_, err = root.UserRevokeRole(ctx, "bob", "reader")
	wantErr(t, "revoke role not granted", err, rpctypes.ErrRoleNotGranted)
	_, err = root.RoleRevokePermission(ctx, "reader", "a", "b")
	wantErr(t, "revoke permission not granted", err, rpctypes.ErrPermissionNotGranted)
	_, err = root.UserDelete(ctx, "root")
	wantErr(t, "delete root", err, rpctypes.ErrInvalidAuthMgmt)
	_, err = root.RoleDelete(ctx, "root")
	wantErr(t, "delete root role", err, rpctypes.ErrInvalidAuthMgmt)
	_, err = root.UserRevokeRole(ctx, "root", "root")
	wantErr(t, "revoke root from root", err, rpctypes.ErrInvalidAuthMgmt)

	if _, err := root.RoleGrantPermission(ctx, "reader", "a", "c", clientv3.PermissionType(clientv3.PermRead)); err != nil {
		t.Fatal(err)
	}
	if _, err := root.UserGrantRole(ctx, "bob", "reader"); err != nil {
		t.Fatal(err)
	}
	ul, err := root.UserList(ctx)
	if err != nil || fmt.Sprint(ul.Users) != "[alice bob root]" {
		t.Fatalf("user list: %v %v", ul, err)
	}
	// Granting root does not create a root role, as in etcd.
	rl, err := root.RoleList(ctx)
	if err != nil || fmt.Sprint(rl.Roles) != "[other reader]" {
		t.Fatalf("role list: %v %v", rl, err)
	}

	// A user may read itself and the roles it holds, nothing else.
	bob := userClient(t, cfg, "bob", "bobpw")
	ug, err := bob.UserGet(ctx, "bob")
	if err != nil || fmt.Sprint(ug.Roles) != "[reader]" {
		t.Fatalf("bob gets bob: %v %v", ug, err)
	}
	_, err = bob.UserGet(ctx, "alice")
	wantErr(t, "bob gets alice", err, rpctypes.ErrPermissionDenied)
	rg, err := bob.RoleGet(ctx, "reader")
	if err != nil || len(rg.Perm) != 1 || string(rg.Perm[0].Key) != "a" {
		t.Fatalf("bob gets reader: %v %v", rg, err)
	}
	_, err = bob.RoleGet(ctx, "other")
	wantErr(t, "bob gets other", err, rpctypes.ErrPermissionDenied)
	_, err = bob.UserList(ctx)
	wantErr(t, "bob lists users", err, rpctypes.ErrPermissionDenied)
	_, err = bob.UserAdd(ctx, "mallory", "x")
	wantErr(t, "bob adds a user", err, rpctypes.ErrPermissionDenied)
	_, err = bob.UserGrantRole(ctx, "bob", "root")
	wantErr(t, "bob makes himself root", err, rpctypes.ErrPermissionDenied)

	// A password change invalidates the old one.
	if _, err := root.UserChangePassword(ctx, "bob", "newpw"); err != nil {
		t.Fatal(err)
	}
	_, err = clientv3.New(clientv3.Config{Endpoints: cfg.AdvertiseClientURLs, Username: "bob", Password: "bobpw", DialTimeout: 5 * time.Second})
	wantErr(t, "old password", err, rpctypes.ErrAuthFailed)
	userClient(t, cfg, "bob", "newpw")

	if _, err := root.RoleDelete(ctx, "reader"); err != nil {
		t.Fatal(err)
	}
	ug, err = root.UserGet(ctx, "bob")
	if err != nil || len(ug.Roles) != 0 {
		t.Fatalf("role delete did not revoke it: %v %v", ug, err)
	}
	if _, err := root.UserDelete(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	_, err = root.UserDelete(ctx, "bob")
	wantErr(t, "delete twice", err, rpctypes.ErrUserNotFound)
}

// permFixture is a member with auth on and three users over keys [a, c):
// reader may read, writer may write, rw may do both.
type permFixture struct {
	cfg                      Config
	s                        *Server
	root, reader, writer, rw *clientv3.Client
}

func newPermFixture(t *testing.T, cfg Config) *permFixture {
	t.Helper()
	s, cli := startInProcess(t, cfg)
	t.Cleanup(s.Stop)
	t.Cleanup(func() { cli.Close() })
	enableAuth(t, cli)
	f := &permFixture{cfg: cfg, s: s, root: userClient(t, cfg, "root", "rootpw")}
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.root.RoleAdd(ctx, "r"))
	must(f.root.RoleAdd(ctx, "w"))
	must(f.root.RoleGrantPermission(ctx, "r", "a", "c", clientv3.PermissionType(clientv3.PermRead)))
	must(f.root.RoleGrantPermission(ctx, "w", "a", "c", clientv3.PermissionType(clientv3.PermWrite)))
	for user, roles := range map[string][]string{"reader": {"r"}, "writer": {"w"}, "rw": {"r", "w"}} {
		must(f.root.UserAdd(ctx, user, "pw"))
		for _, r := range roles {
			must(f.root.UserGrantRole(ctx, user, r))
		}
	}
	f.reader = userClient(t, cfg, "reader", "pw")
	f.writer = userClient(t, cfg, "writer", "pw")
	f.rw = userClient(t, cfg, "rw", "pw")
	must(f.root.Put(ctx, "b", "v0"))
	must(f.root.Put(ctx, "z", "secret"))
	return f
}

func TestAuthPermissionMatrix(t *testing.T) {
	f := newPermFixture(t, authTestConfig(t))
	ctx := context.Background()
	deny := rpctypes.ErrPermissionDenied
	get := func(c *clientv3.Client, key string, opts ...clientv3.OpOption) error {
		_, err := c.Get(ctx, key, opts...)
		return err
	}
	put := func(c *clientv3.Client, key string, opts ...clientv3.OpOption) error {
		_, err := c.Put(ctx, key, "v", opts...)
		return err
	}
	del := func(c *clientv3.Client, key string, opts ...clientv3.OpOption) error {
		_, err := c.Delete(ctx, key, opts...)
		return err
	}
	txn := func(c *clientv3.Client, cmps []clientv3.Cmp, then, els []clientv3.Op) error {
		_, err := c.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		return err
	}
	cmpB := clientv3.Compare(clientv3.Value("b"), "=", "v0")
	cmpZ := clientv3.Compare(clientv3.Value("z"), "=", "secret")
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"reader get b", get(f.reader, "b"), nil},
		{"reader get range [a,c)", get(f.reader, "a", clientv3.WithRange("c")), nil},
		{"reader get prefix (beyond c)", get(f.reader, "", clientv3.WithPrefix()), deny},
		{"reader get z", get(f.reader, "z"), deny},
		{"writer get b", get(f.writer, "b"), deny},
		{"reader put b", put(f.reader, "b"), deny},
		{"writer put z", put(f.writer, "z"), deny},
		{"writer put b with prev_kv", put(f.writer, "b", clientv3.WithPrevKV()), deny},
		{"rw put b with prev_kv", put(f.rw, "b", clientv3.WithPrevKV()), nil},
		{"writer put b", put(f.writer, "b"), nil},
		{"writer delete b", del(f.writer, "bb"), nil},
		{"writer delete [a,z)", del(f.writer, "a", clientv3.WithRange("z")), deny},
		{"writer delete b prev_kv", del(f.writer, "bb", clientv3.WithPrevKV()), deny},
		{"rw delete b prev_kv", del(f.rw, "bb", clientv3.WithPrevKV()), nil},
		{"reader read-only txn", txn(f.reader, nil, []clientv3.Op{clientv3.OpGet("b")}, nil), nil},
		{"reader read-only txn on z", txn(f.reader, nil, []clientv3.Op{clientv3.OpGet("z")}, nil), deny},
		{"rw txn compare on z", txn(f.rw, []clientv3.Cmp{cmpZ}, []clientv3.Op{clientv3.OpPut("b", "x")}, nil), deny},
		{"rw txn failure branch writes z", txn(f.rw, []clientv3.Cmp{cmpB}, []clientv3.Op{clientv3.OpPut("b", "x")}, []clientv3.Op{clientv3.OpPut("z", "x")}), deny},
		{"rw txn nested write to z", txn(f.rw, nil, []clientv3.Op{clientv3.OpPut("b", "x"), clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("z", "x")}, nil)}, nil), deny},
		{"rw txn nested read of z", txn(f.rw, nil, []clientv3.Op{clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpGet("z")}, nil)}, nil), deny},
		{"writer txn put b", txn(f.writer, nil, []clientv3.Op{clientv3.OpPut("b", "x")}, nil), nil},
		{"writer txn compare needs read", txn(f.writer, []clientv3.Cmp{cmpB}, []clientv3.Op{clientv3.OpPut("b", "x")}, nil), deny},
		{"rw txn", txn(f.rw, []clientv3.Cmp{clientv3.Compare(clientv3.Value("b"), "=", "x")}, []clientv3.Op{clientv3.OpPut("b", "y"), clientv3.OpDelete("bb")}, nil), nil},
	} {
		wantErr(t, tc.name, tc.err, tc.want)
	}
	// z was never written by anyone but root.
	r, err := f.root.Get(ctx, "z")
	if err != nil || string(r.Kvs[0].Value) != "secret" || r.Kvs[0].Version != 1 {
		t.Fatalf("z changed: %v %v", r, err)
	}

	// Watch creation checks READ on the range.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	wr := <-f.reader.Watch(wctx, "z")
	if !wr.Canceled || wr.Err() == nil || !strings.Contains(wr.Err().Error(), rpctypes.ErrorDesc(rpctypes.ErrGRPCPermissionDenied)) {
		t.Fatalf("reader watch z: canceled=%v err=%v", wr.Canceled, wr.Err())
	}
	wch := f.reader.Watch(wctx, "b", clientv3.WithCreatedNotify())
	if wr := <-wch; wr.Canceled || !wr.Created {
		t.Fatalf("reader watch b: %+v", wr)
	}
	if _, err := f.writer.Put(ctx, "b", "w"); err != nil {
		t.Fatal(err)
	}
	if wr := <-wch; len(wr.Events) != 1 || string(wr.Events[0].Kv.Value) != "w" {
		t.Fatalf("reader watch b event: %+v", wr)
	}
}

func TestAuthAdminOnlyRPCs(t *testing.T) {
	f := newPermFixture(t, authTestConfig(t))
	ctx := context.Background()
	ep := f.cfg.AdvertiseClientURLs[0]
	deny := rpctypes.ErrPermissionDenied
	_, err := f.reader.Defragment(ctx, ep)
	wantErr(t, "reader defragment", err, deny)
	_, err = f.reader.HashKV(ctx, ep, 0)
	wantErr(t, "reader hashkv", err, deny)
	_, err = f.reader.Compact(ctx, 2)
	wantErr(t, "reader compact", err, deny)
	_, err = pb.NewMaintenanceClient(f.reader.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, Alarm: pb.AlarmType_NOSPACE})
	wantErr(t, "reader alarm disarm", err, deny)
	_, err = f.reader.MemberAdd(ctx, []string{"http://127.0.0.1:1"})
	wantErr(t, "reader member add", err, deny)
	_, err = f.reader.Status(ctx, ep)
	wantErr(t, "reader status", err, nil)
	_, err = f.reader.AlarmList(ctx)
	wantErr(t, "reader alarm list", err, nil)
	_, err = f.root.Defragment(ctx, ep)
	wantErr(t, "root defragment", err, nil)
	_, err = f.root.Compact(ctx, 2)
	wantErr(t, "root compact", err, nil)

	// Without any user only nothing works.
	anon, err := clientv3.New(clientv3.Config{Endpoints: f.cfg.AdvertiseClientURLs})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	_, err = anon.Status(ctx, ep)
	wantErr(t, "anonymous status", err, rpctypes.ErrUserEmpty)
	_, err = anon.Grant(ctx, 10)
	wantErr(t, "anonymous lease grant", err, rpctypes.ErrUserEmpty)
	_, err = anon.Compact(ctx, 2)
	wantErr(t, "anonymous compact", err, rpctypes.ErrUserEmpty)
}

func TestAuthLeasePermissions(t *testing.T) {
	cfg := authTestConfig(t)
	cfg.LeaseCheckInterval = 100 * time.Millisecond
	f := newPermFixture(t, cfg)
	ctx := context.Background()
	deny := rpctypes.ErrPermissionDenied

	// root's lease holds z, which writer may not write.
	rl, err := f.root.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.root.Put(ctx, "z", "leased", clientv3.WithLease(rl.ID)); err != nil {
		t.Fatal(err)
	}
	_, err = f.writer.Revoke(ctx, rl.ID)
	wantErr(t, "writer revokes root's lease", err, deny)
	_, err = f.writer.Put(ctx, "b", "v", clientv3.WithLease(rl.ID))
	wantErr(t, "writer attaches to root's lease", err, deny)
	_, err = f.reader.TimeToLive(ctx, rl.ID, clientv3.WithAttachedKeys())
	wantErr(t, "reader lists keys of root's lease", err, deny)
	if _, err := f.reader.TimeToLive(ctx, rl.ID); err != nil {
		t.Fatalf("reader ttl without keys: %v", err)
	}
	_, err = f.writer.KeepAliveOnce(ctx, rl.ID)
	wantErr(t, "writer keeps root's lease alive", err, deny)

	// writer's own lease over b is writer's to revoke.
	wl, err := f.writer.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.writer.Put(ctx, "b", "mine", clientv3.WithLease(wl.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.writer.KeepAliveOnce(ctx, wl.ID); err != nil {
		t.Fatalf("writer keeps own lease alive: %v", err)
	}
	if _, err := f.writer.Revoke(ctx, wl.ID); err != nil {
		t.Fatalf("writer revokes own lease: %v", err)
	}

	// Lease expiry is internal: it revokes whatever the lease holds even with
	// auth on (etcd's WithRoot).
	short, err := f.root.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.root.Put(ctx, "zz", "short", clientv3.WithLease(short.ID)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := f.root.Get(ctx, "zz")
		if err != nil {
			t.Fatal(err)
		}
		if r.Count == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("expired lease was not revoked with auth on")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAuthTokenExpiry: a simple token dies --auth-token-ttl after its last
// use.
func TestAuthTokenExpiry(t *testing.T) {
	cfg := authTestConfig(t)
	cfg.AuthTokenTTL = time.Second
	s, cli := startInProcess(t, cfg)
	defer s.Stop()
	defer cli.Close()
	enableAuth(t, cli)
	ctx := context.Background()
	ar, err := cli.Authenticate(ctx, "root", "rootpw")
	if err != nil {
		t.Fatal(err)
	}
	kv := pb.NewKVClient(cli.ActiveConnection())
	withToken := metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, ar.Token)
	if _, err := kv.Range(withToken, &pb.RangeRequest{Key: []byte("k")}); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	time.Sleep(3 * time.Second)
	_, err = kv.Range(withToken, &pb.RangeRequest{Key: []byte("k")})
	wantErr(t, "expired token", err, rpctypes.ErrInvalidAuthToken)
	_, err = kv.Put(withToken, &pb.PutRequest{Key: []byte("k")})
	wantErr(t, "expired token put", err, rpctypes.ErrInvalidAuthToken)
	bad := metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, "forged.1")
	_, err = kv.Range(bad, &pb.RangeRequest{Key: []byte("k")})
	wantErr(t, "forged token", err, rpctypes.ErrInvalidAuthToken)
}

// TestAuthStaleRevisionAtApply: a write authorized before a revocation that
// raft orders first is refused at apply time, whatever the proposer saw.
func TestAuthStaleRevisionAtApply(t *testing.T) {
	f := newPermFixture(t, authTestConfig(t))
	ctx := context.Background()
	rev := f.s.authStore.Revision()
	put := &pb.InternalRaftRequest{Header: &pb.RequestHeader{Username: "writer", AuthRevision: rev}, Put: &pb.PutRequest{Key: []byte("b")}}
	if err := f.s.authorizeApply(put); err != nil {
		t.Fatalf("current revision: %v", err)
	}
	if _, err := f.root.RoleRevokePermission(ctx, "w", "a", "c"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "stale revision", f.s.authorizeApply(put), rpctypes.ErrAuthOldRevision)
	put.Header.AuthRevision = f.s.authStore.Revision()
	wantErr(t, "current revision after revoke", f.s.authorizeApply(put), rpctypes.ErrPermissionDenied)
	put.Header = &pb.RequestHeader{}
	wantErr(t, "no user", f.s.authorizeApply(put), rpctypes.ErrUserEmpty)
}

// TestAuthRevocationRace revokes a permission while writers and readers
// hammer the range: every request either succeeds or fails with
// ErrAuthOldRevision / ErrPermissionDenied, and every write that succeeded
// was applied before the revocation: none slips in after it.
func TestAuthRevocationRace(t *testing.T) {
	f := newPermFixture(t, authTestConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const workers = 8
	var (
		revoked  atomic.Bool
		mu       sync.Mutex
		okRevs   []int64 // revisions of successful writes
		afterOK  int     // successes of requests started after the revoke returned
		badErrs  []error
		wg       sync.WaitGroup
		stopping = make(chan struct{})
	)
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stopping:
					return
				default:
				}
				after := revoked.Load()
				var err error
				var rev int64
				if i%2 == 0 {
					var r *clientv3.PutResponse
					if r, err = f.rw.Put(ctx, fmt.Sprintf("b/%d/%d", i, n), "v"); err == nil {
						rev = r.Header.Revision
					}
				} else {
					_, err = f.rw.Get(ctx, "b", clientv3.WithRange("c"))
				}
				mu.Lock()
				switch {
				case err == nil:
					if rev != 0 {
						okRevs = append(okRevs, rev)
					}
					if after {
						afterOK++
					}
				case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrAuthOldRevision):
				default:
					badErrs = append(badErrs, err)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := f.root.UserRevokeRole(ctx, "rw", "w"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.root.UserRevokeRole(ctx, "rw", "r"); err != nil {
		t.Fatal(err)
	}
	// The key revision at which the revocation took effect: nothing the
	// writers wrote may be above it.
	cut, err := f.root.Get(ctx, "nothing")
	if err != nil {
		t.Fatal(err)
	}
	revoked.Store(true)
	time.Sleep(300 * time.Millisecond)
	close(stopping)
	wg.Wait()
	if len(badErrs) > 0 {
		t.Fatalf("unexpected errors: %v", badErrs)
	}
	if afterOK > 0 {
		t.Fatalf("%d requests started after the revocation succeeded", afterOK)
	}
	for _, r := range okRevs {
		if r > cut.Header.Revision {
			t.Fatalf("a write at revision %d succeeded after the revocation (revision %d)", r, cut.Header.Revision)
		}
	}
	if len(okRevs) == 0 {
		t.Fatal("no write succeeded before the revocation: the race was not exercised")
	}
	r, err := f.root.Get(ctx, "b/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || r.Count != int64(len(okRevs)) {
		t.Fatalf("%v keys written, %d acknowledged (err %v)", r.Count, len(okRevs), err)
	}
}

// TestAuthLockService: the Lock service calls the member back as its
// client; the caller's token must travel with those calls.
func TestAuthLockService(t *testing.T) {
	f := newPermFixture(t, authTestConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := f.root.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	lc := v3lockpb.NewLockClient(f.root.ActiveConnection())
	resp, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("zlock"), Lease: int64(l.ID)})
	if err != nil {
		t.Fatalf("root lock: %v", err)
	}
	if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: resp.Key}); err != nil {
		t.Fatalf("root unlock: %v", err)
	}
	wl, err := f.writer.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v3lockpb.NewLockClient(f.writer.ActiveConnection()).Lock(ctx, &v3lockpb.LockRequest{Name: []byte("zlock"), Lease: int64(wl.ID)})
	wantErr(t, "writer locks outside its range", err, rpctypes.ErrPermissionDenied)
}

// testPKI is a CA made at run time and certificates it signed, written as
// PEM files into a temporary directory.
type testPKI struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "metastore test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: t.TempDir(), caCert: ca, caKey: key}
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	return p
}

// issue returns the cert and key files of a certificate for cn, valid for
// 127.0.0.1 as a server and as a client.
func (p *testPKI) issue(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, cn+".pem"), filepath.Join(p.dir, cn+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsClient connects over TLS with the certificate of cn ("" for none).
func (p *testPKI) tlsClient(t *testing.T, cfg Config, cn string) (*clientv3.Client, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	tc := &tls.Config{RootCAs: pool}
	if cn != "" {
		certFile, keyFile := p.issue(t, cn)
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.AdvertiseClientURLs, TLS: tc, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cli.Close() })
	return cli, nil
}

// tlsConfig is authTestConfig with https client and peer URLs, verified
// client certificates and peer TLS.
func tlsConfig(t *testing.T, p *testPKI) Config {
	cfg := authTestConfig(t)
	for _, urls := range [][]string{cfg.ListenClientURLs, cfg.AdvertiseClientURLs, cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs} {
		for i := range urls {
			urls[i] = strings.Replace(urls[i], "http://", "https://", 1)
		}
	}
	cfg.InitialCluster = ""
	cert, key := p.issue(t, "member")
	cfg.ClientTLS = TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: p.caFile, ClientCertAuth: true}
	cfg.PeerTLS = TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: p.caFile, ClientCertAuth: true}
	return cfg
}

// TestTLSClientCertAuth: with --client-cert-auth and auth on, a request
// without a token is made by the user its certificate names; a client
// without a certificate cannot connect at all.
func TestTLSClientCertAuth(t *testing.T) {
	p := newTestPKI(t)
	cfg := tlsConfig(t, p)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	root, err := p.tlsClient(t, cfg, "root")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := root.Get(ctx, "ready"); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("member not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	enableAuth(t, root)
	if _, err := root.RoleAdd(ctx, "app"); err != nil {
		t.Fatalf("root by certificate: %v", err)
	}
	if _, err := root.RoleGrantPermission(ctx, "app", "app/", "app0", clientv3.PermissionType(clientv3.PermReadWrite)); err != nil {
		t.Fatal(err)
	}
	if _, err := root.UserAdd(ctx, "alice", "alicepw"); err != nil {
		t.Fatal(err)
	}
	alice, err := p.tlsClient(t, cfg, "alice")
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.Put(ctx, "app/x", "1")
	wantErr(t, "alice before grant", err, rpctypes.ErrPermissionDenied)
	if _, err := root.UserGrantRole(ctx, "alice", "app"); err != nil {
		t.Fatal(err)
	}
	_, err = alice.Put(ctx, "app/x", "1")
	wantErr(t, "alice after grant", err, nil)
	_, err = alice.Put(ctx, "other", "1")
	wantErr(t, "alice outside her range", err, rpctypes.ErrPermissionDenied)
	_, err = alice.AuthDisable(ctx)
	wantErr(t, "alice disables auth", err, rpctypes.ErrPermissionDenied)

	// The member's own certificate names nobody.
	mc, err := clientv3.New(clientv3.Config{Endpoints: cfg.AdvertiseClientURLs, TLS: s.tlsc.clientDial, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	_, err = mc.Get(ctx, "app/x")
	wantErr(t, "member certificate", err, rpctypes.ErrUserEmpty)

	// No certificate: the handshake fails.
	anon, err := p.tlsClient(t, cfg, "")
	if err == nil {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = anon.Get(actx, "app/x")
		acancel()
	}
	if err == nil {
		t.Fatal("a client without a certificate was served")
	}
}

// TestTLSAutoAndValidation: --auto-tls serves TLS with a generated
// certificate; bad TLS flags are all reported at start.
func TestTLSAutoAndValidation(t *testing.T) {
	cfg := authTestConfig(t)
	for _, urls := range [][]string{cfg.ListenClientURLs, cfg.AdvertiseClientURLs} {
		urls[0] = strings.Replace(urls[0], "http://", "https://", 1)
	}
	bad := cfg
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "neither --cert-file nor auto TLS") {
		t.Fatalf("https without TLS: %v", err)
	}
	bad.ClientTLS = TLSInfo{CertFile: "x", ClientCertAuth: true}
	bad.CipherSuites = []string{"TLS_RSA_WITH_RC4_128_SHA"}
	bad.TLSMinVersion = "TLS1.0"
	err = bad.Validate()
	for _, want := range []string{"key file must be given together", "needs a trusted CA file", "cipher suite", "--tls-min-version"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("validation %v, want it to mention %q", err, want)
		}
	}

	cfg.ClientTLS.AutoTLS = true
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.AdvertiseClientURLs, TLS: &tls.Config{InsecureSkipVerify: true}, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if _, err := cli.Put(ctx, "k", "v"); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("auto TLS: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "fixtures", "client", "cert.pem")); err != nil {
		t.Fatalf("generated certificate: %v", err)
	}
	// A cleartext client gets nothing from a TLS listener.
	plain, err := clientv3.New(clientv3.Config{Endpoints: []string{strings.Replace(cfg.AdvertiseClientURLs[0], "https://", "http://", 1)}, DialTimeout: 3 * time.Second, Logger: zap.NewNop()})
	if err == nil {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = plain.Get(pctx, "k")
		pcancel()
		plain.Close()
	}
	if err == nil {
		t.Fatal("a cleartext client was served by a TLS listener")
	}
}

// TestAuthInternalProposals: proposals that do not come from a gRPC request
// (auto-compaction here, lease expiry in TestAuthLeasePermissions) run as
// root; a gRPC request without credentials runs as nobody.
func TestAuthInternalProposals(t *testing.T) {
	old := revisionCompactionInterval
	revisionCompactionInterval = 200 * time.Millisecond
	defer func() { revisionCompactionInterval = old }()
	cfg := authTestConfig(t)
	cfg.AutoCompactionMode = "revision"
	cfg.AutoCompactionRetention = "10"
	f := newPermFixture(t, cfg)

	var h pb.RequestHeader
	if err := f.s.fillAuthHeader(context.Background(), &h); err != nil || h.Username != rootUser {
		t.Fatalf("internal proposal header %+v (err %v), want root", h, err)
	}
	h = pb.RequestHeader{}
	rpcCtx := grpc.NewContextWithServerTransportStream(context.Background(), &fakeTransportStream{})
	if err := f.s.fillAuthHeader(rpcCtx, &h); err != nil || h.Username != "" {
		t.Fatalf("anonymous request header %+v (err %v), want no user", h, err)
	}

	ctx := context.Background()
	var last int64
	for i := 0; i < 30; i++ {
		r, err := f.root.Put(ctx, "k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.s.kv.CompactedRev() != last-10 {
		if time.Now().After(deadline) {
			t.Fatalf("auto-compaction with auth on: compacted revision %d, want %d", f.s.kv.CompactedRev(), last-10)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fakeTransportStream marks a context as a gRPC server handler's.
type fakeTransportStream struct{}

func (*fakeTransportStream) Method() string               { return "/etcdserverpb.KV/Put" }
func (*fakeTransportStream) SetHeader(metadata.MD) error  { return nil }
func (*fakeTransportStream) SendHeader(metadata.MD) error { return nil }
func (*fakeTransportStream) SetTrailer(metadata.MD) error { return nil }

// TestAuthGateway: the JSON gateway authenticates and passes the token,
// sent as the Authorization header, to the gRPC side.
func TestAuthGateway(t *testing.T) {
	f := newPermFixture(t, authTestConfig(t))
	base := f.cfg.AdvertiseClientURLs[0]
	code, body := post(t, base+"/v3/auth/authenticate", `{"name":"writer","password":"pw"}`)
	if code != 200 {
		t.Fatalf("authenticate: %d %s", code, body)
	}
	var ar struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(body), &ar); err != nil || ar.Token == "" {
		t.Fatalf("authenticate response %s (%v)", body, err)
	}
	putAs := func(token, key string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, base+"/v3/kv/put", strings.NewReader(`{"key":"`+key+`","value":"eA=="}`))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := putAs(ar.Token, "Yg=="); code != 200 { // "b"
		t.Fatalf("writer puts b: %d %s", code, body)
	}
	if code, body := putAs(ar.Token, "eg=="); code == 200 || !strings.Contains(body, "permission denied") { // "z"
		t.Fatalf("writer puts z: %d %s", code, body)
	}
	if code, body := putAs("", "Yg=="); code == 200 || !strings.Contains(body, "user name is empty") {
		t.Fatalf("anonymous put: %d %s", code, body)
	}
}
