package auth

import (
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// memBackend is an in-memory engine: Backend over a map, and a Writer
// whose batch is applied at once (tests commit every call).
type memBackend struct {
	mu sync.Mutex
	kv map[string][]byte
}

func newMemBackend() *memBackend { return &memBackend{kv: map[string][]byte{}} }

func (b *memBackend) Put(k, v []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kv[string(k)] = v
}

func (b *memBackend) Delete(k []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.kv, string(k))
}

func (b *memBackend) Load() (State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := make([]string, 0, len(b.kv))
	for k := range b.kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return LoadState(func(fn func(k, v []byte) error) error {
		for _, k := range keys {
			if err := fn([]byte(k), b.kv[k]); err != nil {
				return err
			}
		}
		return nil
	})
}

// fakeClock is an injectable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type testEnv struct {
	t     testing.TB
	be    *memBackend
	s     *Store
	clock *fakeClock
}

func newTestEnv(t testing.TB, spec string) *testEnv {
	t.Helper()
	clock := newFakeClock()
	tp, err := NewTokenProvider(TokenConfig{Spec: spec, Now: clock.Now, CleanupInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	be := newMemBackend()
	s, err := NewStore(be, Options{BcryptCost: bcrypt.MinCost, TokenProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testEnv{t: t, be: be, s: s, clock: clock}
}

// ok fails the test on err; call it as e.ok(e.s.UserAdd(...)).
func (e *testEnv) ok(_ any, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) userAdd(name, pw string) {
	e.t.Helper()
	r := &pb.AuthUserAddRequest{Name: name, Password: pw}
	if err := e.s.PrepareUserAdd(r); err != nil {
		e.t.Fatal(err)
	}
	e.ok(e.s.UserAdd(e.be, r))
}

func (e *testEnv) roleAdd(name string) {
	e.t.Helper()
	e.ok(e.s.RoleAdd(e.be, &pb.AuthRoleAddRequest{Name: name}))
}

func (e *testEnv) grantRole(user, role string) {
	e.t.Helper()
	e.ok(e.s.UserGrantRole(e.be, &pb.AuthUserGrantRoleRequest{User: user, Role: role}))
}

func (e *testEnv) grantPerm(role string, typ authpb.Permission_Type, key, end string) {
	e.t.Helper()
	p := &authpb.Permission{PermType: typ, Key: []byte(key)}
	if end != "" {
		p.RangeEnd = []byte(end)
	}
	e.ok(e.s.RoleGrantPermission(e.be, &pb.AuthRoleGrantPermissionRequest{Name: role, Perm: p}))
}

// enableWithRoot creates root/rootpw with the root role and enables auth.
func (e *testEnv) enableWithRoot() {
	e.t.Helper()
	e.userAdd("root", "rootpw")
	e.grantRole("root", "root")
	if err := e.s.AuthEnable(e.be); err != nil {
		e.t.Fatal(err)
	}
}

// ai returns an AuthInfo for user at the current revision.
func (e *testEnv) ai(user string) *AuthInfo {
	return &AuthInfo{Username: user, Revision: e.s.Revision()}
}
