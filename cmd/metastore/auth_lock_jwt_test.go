package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

// setupAuth creates root (rootpw) and worker (workerpw, readwrite on the
// prefixes) and outsider (outsiderpw, no role), then enables auth.
func setupAuth(t *testing.T, eps []string, prefixes ...string) {
	t.Helper()
	run := func(args ...string) { mustEtcdctl(t, eps, "", args...) }
	run("user", "add", "root:rootpw")
	run("user", "grant-role", "root", "root")
	run("user", "add", "worker:workerpw")
	run("user", "add", "outsider:outsiderpw")
	run("role", "add", "work")
	for _, p := range prefixes {
		run("role", "grant-permission", "work", "readwrite", p, "--prefix")
	}
	run("user", "grant-role", "worker", "work")
	run("auth", "enable")
}

func userClientOf(t *testing.T, eps []string, user, pw string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, Username: user, Password: pw, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func wantRPCErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if err == nil || rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

// TestLockElectionUnderAuth: the Lock and Election services under auth, on
// a three-member cluster. Permission on the lock's prefix is needed; a
// holder whose lease expired loses the lock to the next waiter, and its
// write fenced on the lock key's revision fails.
func TestLockElectionUnderAuth(t *testing.T) {
	c := newCluster(t, 3, "--bcrypt-cost", "4")
	eps := c.endpoints()
	setupAuth(t, eps, "locks/", "elect/", "data/")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	holder := userClientOf(t, eps[:1], "worker", "workerpw")
	waiter := userClientOf(t, eps[2:], "worker", "workerpw")
	outsider := userClientOf(t, eps, "outsider", "outsiderpw")

	const holderTTLSeconds = 2
	short, err := holder.Grant(ctx, holderTTLSeconds) // never kept alive
	if err != nil {
		t.Fatal(err)
	}
	held, err := v3lockpb.NewLockClient(holder.ActiveConnection()).Lock(ctx, &v3lockpb.LockRequest{Name: []byte("locks/job"), Lease: int64(short.ID)})
	if err != nil {
		t.Fatalf("holder lock: %v", err)
	}
	// The fence: the lock key's create revision (the Lock response's
	// header revision is not it for a holder that waited).
	createRev := func(cli *clientv3.Client, key []byte) int64 {
		t.Helper()
		r, err := cli.Get(ctx, string(key))
		if err != nil || len(r.Kvs) != 1 {
			t.Fatalf("lock key %q: %v %v", key, r, err)
		}
		return r.Kvs[0].CreateRevision
	}
	heldRev := createRev(holder, held.Key)
	ol, err := outsider.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v3lockpb.NewLockClient(outsider.ActiveConnection()).Lock(ctx, &v3lockpb.LockRequest{Name: []byte("locks/job"), Lease: int64(ol.ID)})
	wantRPCErr(t, "outsider locks", err, rpctypes.ErrPermissionDenied)

	long, err := waiter.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := v3lockpb.NewLockClient(waiter.ActiveConnection()).Lock(ctx, &v3lockpb.LockRequest{Name: []byte("locks/job"), Lease: int64(long.ID)})
	if err != nil {
		t.Fatalf("waiter lock: %v", err)
	}
	waited := time.Since(start)
	if string(got.Key) == string(held.Key) || !strings.HasPrefix(string(got.Key), "locks/job/") {
		t.Fatalf("waiter got key %q, holder had %q", got.Key, held.Key)
	}
	// The waiter got the lock only once the holder's lease expired.
	ttl, err := waiter.TimeToLive(ctx, short.ID)
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("holder's lease after the waiter got the lock: ttl %v, err %v (waited %v)", ttl, err, waited)
	}

	// The old holder's write, fenced on its lock key, fails.
	tr, err := holder.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(string(held.Key)), "=", heldRev)).
		Then(clientv3.OpPut("data/x", "from the old holder")).Commit()
	if err != nil || tr.Succeeded {
		t.Fatalf("fenced write of the expired holder: succeeded %v, err %v", tr != nil && tr.Succeeded, err)
	}
	tr, err = waiter.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(string(got.Key)), "=", createRev(waiter, got.Key))).
		Then(clientv3.OpPut("data/x", "from the new holder")).Commit()
	if err != nil || !tr.Succeeded {
		t.Fatalf("fenced write of the new holder: %v %v", tr, err)
	}
	if _, err := v3lockpb.NewLockClient(waiter.ActiveConnection()).Unlock(ctx, &v3lockpb.UnlockRequest{Key: got.Key}); err != nil {
		t.Fatalf("unlock: %v", err)
	}

	// Election.
	ec := v3electionpb.NewElectionClient(waiter.ActiveConnection())
	camp, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("elect/e"), Lease: int64(long.ID), Value: []byte("v1")})
	if err != nil {
		t.Fatalf("campaign: %v", err)
	}
	if _, err := ec.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: camp.Leader, Value: []byte("v2")}); err != nil {
		t.Fatalf("proclaim: %v", err)
	}
	lr, err := v3electionpb.NewElectionClient(holder.ActiveConnection()).Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("elect/e")})
	if err != nil || string(lr.Kv.Value) != "v2" {
		t.Fatalf("leader: %v %v", lr, err)
	}
	oe := v3electionpb.NewElectionClient(outsider.ActiveConnection())
	_, err = oe.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("elect/e")})
	wantRPCErr(t, "outsider reads the leader", err, rpctypes.ErrPermissionDenied)
	_, err = oe.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("elect/e"), Lease: int64(ol.ID), Value: []byte("me")})
	wantRPCErr(t, "outsider campaigns", err, rpctypes.ErrPermissionDenied)
	if _, err := ec.Resign(ctx, &v3electionpb.ResignRequest{Leader: camp.Leader}); err != nil {
		t.Fatalf("resign: %v", err)
	}
	_, err = ec.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("elect/e")})
	if err == nil || !strings.Contains(err.Error(), "election: no leader") {
		t.Fatalf("leader after resign: %v, want election: no leader", err)
	}
}

// TestJWTEndToEnd: a member with --auth-token jwt accepts the tokens it
// signed, refuses them once past their ttl, and refuses tokens signed with
// another key or with no signature, with etcd's error.
func TestJWTEndToEnd(t *testing.T) {
	dir := t.TempDir()
	writeKey := func(name string) (*ecdsa.PrivateKey, string, string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		privDER, _ := x509.MarshalECPrivateKey(k)
		pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		priv, pub := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
		if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600); err != nil {
			t.Fatal(err)
		}
		return k, priv, pub
	}
	_, priv, pub := writeKey("member")
	other, _, _ := writeKey("other")
	const tokenTTL = 3 * time.Second
	c := newCluster(t, 1, "--bcrypt-cost", "4", "--auth-token", "jwt,sign-method=ES256,priv-key="+priv+",pub-key="+pub+",ttl="+tokenTTL.String())
	eps := c.endpoints()
	setupAuth(t, eps, "data/")

	cli := c.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ar, err := cli.Authenticate(ctx, "worker", "workerpw")
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now()
	kv := pb.NewKVClient(cli.ActiveConnection())
	with := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, token)
	}
	if _, err := kv.Put(with(ar.Token), &pb.PutRequest{Key: []byte("data/x"), Value: []byte("1")}); err != nil {
		t.Fatalf("put with a fresh jwt: %v", err)
	}
	// The claims etcd puts in its tokens, signed by another key.
	parsed, _, err := jwt.NewParser().ParseUnverified(ar.Token, jwt.MapClaims{})
	if err != nil {
		t.Fatalf("member's token is not a JWT: %v", err)
	}
	claims := parsed.Claims.(jwt.MapClaims)
	if claims["username"] != "worker" {
		t.Fatalf("claims %v", claims)
	}
	forged, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kv.Put(with(forged), &pb.PutRequest{Key: []byte("data/x"), Value: []byte("forged")})
	wantRPCErr(t, "token signed with another key", err, rpctypes.ErrInvalidAuthToken)
	unsigned, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	_, err = kv.Range(with(unsigned), &pb.RangeRequest{Key: []byte("data/x")})
	wantRPCErr(t, "unsigned token", err, rpctypes.ErrInvalidAuthToken)

	time.Sleep(time.Until(issued.Add(tokenTTL + time.Second)))
	_, err = kv.Range(with(ar.Token), &pb.RangeRequest{Key: []byte("data/x")})
	wantRPCErr(t, "expired jwt", err, rpctypes.ErrInvalidAuthToken)
	_, err = kv.Put(with(ar.Token), &pb.PutRequest{Key: []byte("data/x"), Value: []byte("late")})
	wantRPCErr(t, "expired jwt put", err, rpctypes.ErrInvalidAuthToken)
	// A client with credentials gets a new token by itself.
	worker := userClientOf(t, eps, "worker", "workerpw")
	if r, err := worker.Get(ctx, "data/x"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "1" {
		t.Fatalf("get after expiry with a new token: %v %v", r, err)
	}
}
