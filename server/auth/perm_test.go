package auth

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/pkg/v3/adt"
)

// etcdPerms is etcd's range_perm_cache: one adt interval tree per type.
type etcdPerms struct{ read, write adt.IntervalTree }

func etcdMerged(perms []*authpb.Permission) etcdPerms {
	ep := etcdPerms{adt.NewIntervalTree(), adt.NewIntervalTree()}
	for _, perm := range perms {
		var ivl adt.Interval
		var rangeEnd []byte
		if len(perm.RangeEnd) != 1 || perm.RangeEnd[0] != 0 {
			rangeEnd = perm.RangeEnd
		}
		if len(perm.RangeEnd) != 0 {
			ivl = adt.NewBytesAffineInterval(perm.Key, rangeEnd)
		} else {
			ivl = adt.NewBytesAffinePoint(perm.Key)
		}
		switch perm.PermType {
		case authpb.READWRITE:
			ep.read.Insert(ivl, struct{}{})
			ep.write.Insert(ivl, struct{}{})
		case authpb.READ:
			ep.read.Insert(ivl, struct{}{})
		case authpb.WRITE:
			ep.write.Insert(ivl, struct{}{})
		}
	}
	return ep
}

// etcdCheck is etcd's isRangeOpPermitted on one tree.
func etcdCheck(t adt.IntervalTree, key, rangeEnd []byte) bool {
	if len(rangeEnd) == 0 {
		return t.Intersects(adt.NewBytesAffinePoint(key))
	}
	if isOpenEnded(rangeEnd) {
		rangeEnd = nil
	}
	return t.Contains(adt.NewBytesAffineInterval(key, rangeEnd))
}

var testKeys = []string{"\x00", "a", "a\x00", "ab", "abc", "b", "b\x00", "ba", "c", "cd", "d", "z", "\xff"}

func randKey(rng *rand.Rand) []byte { return []byte(testKeys[rng.Intn(len(testKeys))]) }

func randPerm(rng *rand.Rand) *authpb.Permission {
	for {
		p := &authpb.Permission{PermType: authpb.Permission_Type(rng.Intn(3)), Key: randKey(rng)}
		switch rng.Intn(3) {
		case 1:
			p.RangeEnd = []byte{0}
		case 2:
			p.RangeEnd = randKey(rng)
		}
		if isValidPermissionRange(p.Key, p.RangeEnd) {
			return p
		}
	}
}

// TestRangeSetMatchesEtcd checks the merged interval sets against etcd's
// interval trees on random permission sets and every request range over a
// small key alphabet, including open ranges and the empty key. Empty ranges
// (end <= key) are excluded: see containsRange.
func TestRangeSetMatchesEtcd(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	ends := append([]string{"", "\x00"}, testKeys...)
	for iter := 0; iter < 2000; iter++ {
		perms := make([]*authpb.Permission, rng.Intn(8))
		for i := range perms {
			perms[i] = randPerm(rng)
		}
		ours := mergePerms([]string{"r"}, map[string]*authpb.Role{"r": {Name: []byte("r"), KeyPermission: perms}})
		theirs := etcdMerged(perms)
		for _, k := range append([]string{""}, testKeys...) {
			for _, e := range ends {
				key, end := []byte(k), []byte(e)
				if len(end) > 0 && !isOpenEnded(end) && string(end) <= k {
					continue // empty range: etcd's answer depends on tree shape (see containsRange)
				}
				if got, want := ours.read.containsRange(key, end), etcdCheck(theirs.read, key, end); got != want {
					t.Fatalf("read perms %v: range [%q, %q): got %v, etcd %v", perms, k, e, got, want)
				}
				if got, want := ours.write.containsRange(key, end), etcdCheck(theirs.write, key, end); got != want {
					t.Fatalf("write perms %v: range [%q, %q): got %v, etcd %v", perms, k, e, got, want)
				}
			}
		}
	}
}

func TestNormalize(t *testing.T) {
	iv := func(b, e string) interval {
		if e == "inf" {
			return interval{begin: []byte(b)}
		}
		return interval{begin: []byte(b), end: []byte(e)}
	}
	for _, tc := range []struct {
		in, want []interval
	}{
		{nil, nil},
		{[]interval{iv("c", "d"), iv("a", "b")}, []interval{iv("a", "b"), iv("c", "d")}},
		{[]interval{iv("a", "b"), iv("b", "c")}, []interval{iv("a", "c")}},     // adjacent
		{[]interval{iv("a", "c"), iv("b", "d")}, []interval{iv("a", "d")}},     // overlapping
		{[]interval{iv("a", "z"), iv("b", "c")}, []interval{iv("a", "z")}},     // nested
		{[]interval{iv("b", "inf"), iv("a", "c")}, []interval{iv("a", "inf")}}, // open ended
		{[]interval{iv("a", "inf"), iv("x", "y")}, []interval{iv("a", "inf")}}, // absorbed
		{[]interval{iv("a", "a\x00"), iv("b", "c")}, []interval{iv("a", "a\x00"), iv("b", "c")}},
	} {
		got := normalize(append([]interval(nil), tc.in...))
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("normalize(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestPermissionMatrix runs users x roles x key ranges x READ/WRITE through
// the public checks.
func TestPermissionMatrix(t *testing.T) {
	e := newTestEnv(t, "simple")
	// Roles:
	//   reader:  READ [a, c), READ key "k"
	//   writer:  WRITE [b, d), WRITE open-ended [x, +inf)
	//   rw:      READWRITE [m, n)
	//   all:     READWRITE [\x00, +inf)
	//   empty:   no permissions
	for _, r := range []string{"reader", "writer", "rw", "all", "empty"} {
		e.roleAdd(r)
	}
	e.grantPerm("reader", authpb.READ, "a", "c")
	e.grantPerm("reader", authpb.READ, "k", "")
	e.grantPerm("writer", authpb.WRITE, "b", "d")
	e.grantPerm("writer", authpb.WRITE, "x", "\x00")
	e.grantPerm("rw", authpb.READWRITE, "m", "n")
	e.grantPerm("all", authpb.READWRITE, "\x00", "\x00")
	users := map[string][]string{
		"u-reader": {"reader"},
		"u-writer": {"writer"},
		"u-both":   {"reader", "writer"},
		"u-rw":     {"rw"},
		"u-all":    {"all"},
		"u-empty":  {"empty"},
		"u-none":   nil,
		"u-root":   {"root"},
	}
	for u, roles := range users {
		e.userAdd(u, "pw")
		for _, r := range roles {
			e.grantRole(u, r)
		}
	}
	e.enableWithRoot()

	type req struct{ key, end string }
	reqs := []req{
		{"a", ""}, {"b", ""}, {"c", ""}, {"k", ""}, {"k", "l"}, {"a", "c"}, {"a", "d"},
		{"b", "c"}, {"b", "d"}, {"x", ""}, {"x", "\x00"}, {"y", "z"}, {"w", "\x00"},
		{"m", ""}, {"m", "n"}, {"m", "o"}, {"\x00", "\x00"},
	}
	// want[user] lists the requests permitted for R (read) and W (write).
	want := map[string]struct{ R, W []req }{
		"u-reader": {R: []req{{"a", ""}, {"b", ""}, {"k", ""}, {"a", "c"}, {"b", "c"}}},
		"u-writer": {W: []req{{"b", ""}, {"c", ""}, {"b", "c"}, {"b", "d"}, {"x", ""}, {"x", "\x00"}, {"y", "z"}}},
		"u-both": {R: []req{{"a", ""}, {"b", ""}, {"k", ""}, {"a", "c"}, {"b", "c"}},
			W: []req{{"b", ""}, {"c", ""}, {"b", "c"}, {"b", "d"}, {"x", ""}, {"x", "\x00"}, {"y", "z"}}},
		"u-rw":    {R: []req{{"m", ""}, {"m", "n"}}, W: []req{{"m", ""}, {"m", "n"}}},
		"u-all":   {R: reqs, W: reqs},
		"u-root":  {R: reqs, W: reqs},
		"u-empty": {},
		"u-none":  {},
	}
	in := func(rs []req, r req) bool {
		for _, x := range rs {
			if x == r {
				return true
			}
		}
		return false
	}
	for u, w := range want {
		ai := e.ai(u)
		for _, r := range reqs {
			check := func(op string, got error, permitted bool) {
				t.Helper()
				if permitted && got != nil || !permitted && !errors.Is(got, ErrPermissionDenied) {
					t.Errorf("%s %s [%q, %q): got %v, want permitted=%v", u, op, r.key, r.end, got, permitted)
				}
			}
			check("range", e.s.IsRangePermitted(ai, []byte(r.key), []byte(r.end)), in(w.R, r))
			check("delete", e.s.IsDeleteRangePermitted(ai, []byte(r.key), []byte(r.end)), in(w.W, r))
			if r.end == "" {
				check("put", e.s.IsPutPermitted(ai, []byte(r.key)), in(w.W, r))
			}
		}
		wantAdmin := u == "u-root"
		if err := e.s.IsAdminPermitted(ai); (err == nil) != wantAdmin {
			t.Errorf("%s admin: %v", u, err)
		}
	}
}

func TestCheckErrors(t *testing.T) {
	e := newTestEnv(t, "simple")
	e.userAdd("alice", "pw")
	// Disabled: everything passes, even without a user.
	if err := e.s.IsPutPermitted(nil, []byte("k")); err != nil {
		t.Fatal(err)
	}
	if err := e.s.IsAdminPermitted(nil); err != nil {
		t.Fatal(err)
	}
	e.enableWithRoot()
	rev := e.s.Revision()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"nil ai", e.s.IsPutPermitted(nil, []byte("k")), ErrUserEmpty},
		{"rev 0", e.s.IsRangePermitted(&AuthInfo{Username: "alice"}, []byte("k"), nil), ErrUserEmpty},
		{"old rev", e.s.IsRangePermitted(&AuthInfo{Username: "root", Revision: rev - 1}, []byte("k"), nil), ErrAuthOldRevision},
		{"newer rev ok", e.s.IsRangePermitted(&AuthInfo{Username: "root", Revision: rev + 1}, []byte("k"), nil), nil},
		{"unknown user", e.s.IsRangePermitted(&AuthInfo{Username: "bob", Revision: rev}, []byte("k"), nil), ErrPermissionDenied},
		{"no perms", e.s.IsPutPermitted(&AuthInfo{Username: "alice", Revision: rev}, []byte("k")), ErrPermissionDenied},
		{"admin nil", e.s.IsAdminPermitted(nil), ErrUserEmpty},
		{"admin empty", e.s.IsAdminPermitted(&AuthInfo{Revision: rev}), ErrUserEmpty},
		{"admin unknown", e.s.IsAdminPermitted(&AuthInfo{Username: "bob", Revision: rev}), ErrUserNotFound},
		{"admin denied", e.s.IsAdminPermitted(&AuthInfo{Username: "alice", Revision: rev}), ErrPermissionDenied},
		{"admin old rev ignored", e.s.IsAdminPermitted(&AuthInfo{Username: "root", Revision: 1}), nil},
	} {
		if !errors.Is(tc.err, tc.want) || (tc.want == nil && tc.err != nil) {
			t.Errorf("%s: got %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}
