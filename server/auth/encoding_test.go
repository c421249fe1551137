package auth

import (
	"bytes"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
)

func encodedSeeds() [][2][]byte {
	u := &authpb.User{Name: []byte("alice"), Password: []byte("$2a$04$hash"), Roles: []string{"a", "b"},
		Options: &authpb.UserAddOptions{}}
	r := &authpb.Role{Name: []byte("r"), KeyPermission: []*authpb.Permission{
		{PermType: authpb.READ, Key: []byte("a"), RangeEnd: []byte("b")},
		{PermType: authpb.WRITE, Key: []byte("k")},
		{PermType: authpb.READWRITE, Key: []byte("x"), RangeEnd: []byte{0}},
	}}
	return [][2][]byte{
		{[]byte(keyEnabled), {1}},
		{[]byte(keyRevision), encodeRevision(7)},
		{userKey("alice"), mustMarshal(u)},
		{roleKey("r"), mustMarshal(r)},
	}
}

func TestDecodeStrict(t *testing.T) {
	seeds := encodedSeeds()
	var st State
	for _, kv := range seeds {
		if err := DecodeKV(kv[0], kv[1], &st); err != nil {
			t.Fatalf("%q: %v", kv[0], err)
		}
	}
	if !st.Enabled || st.Revision != 7 || len(st.Users) != 1 || len(st.Roles) != 1 {
		t.Fatalf("state %+v", st)
	}
	userVal := seeds[2][1]
	roleVal := seeds[3][1]
	unsorted := mustMarshal(&authpb.User{Name: []byte("alice"), Roles: []string{"b", "a"}})
	badPerm := mustMarshal(&authpb.Role{Name: []byte("r"), KeyPermission: []*authpb.Permission{{Key: []byte("b"), RangeEnd: []byte("a")}}})
	for _, tc := range []struct {
		name       string
		key, value []byte
	}{
		{"unknown key", []byte("auth/other"), nil},
		{"empty user name", []byte("auth/user/"), userVal},
		{"enabled 2", []byte(keyEnabled), []byte{2}},
		{"enabled long", []byte(keyEnabled), []byte{1, 0}},
		{"revision short", []byte(keyRevision), []byte{1}},
		{"name mismatch", userKey("bob"), userVal},
		{"role name mismatch", roleKey("q"), roleVal},
		{"garbage", userKey("alice"), []byte{0xff, 0xff}},
		{"unknown field", userKey("alice"), append(bytes.Clone(userVal), 0x78, 0x01)}, // field 15 varint
		{"duplicate field", userKey("alice"), append(bytes.Clone(userVal), 0x0a, 0x05, 'a', 'l', 'i', 'c', 'e')},
		{"unsorted roles", userKey("alice"), unsorted},
		{"invalid perm range", roleKey("r"), badPerm},
	} {
		var st State
		if err := DecodeKV(tc.key, tc.value, &st); !errors.Is(err, ErrCorruptState) {
			t.Errorf("%s: got %v, want ErrCorruptState", tc.name, err)
		}
	}
}

// FuzzDecodeKV: decoding never panics, and whatever decodes re-encodes to
// the same bytes.
func FuzzDecodeKV(f *testing.F) {
	for _, kv := range encodedSeeds() {
		f.Add(kv[0], kv[1])
	}
	f.Add([]byte("auth/user/x"), []byte{0x0a, 0x01, 'x', 0x1a, 0x00})
	f.Add([]byte("auth/role/"), []byte{})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		var st State
		if err := DecodeKV(key, value, &st); err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("error not ErrCorruptState: %v", err)
			}
			return
		}
		var w memBackend
		w.kv = map[string][]byte{}
		WriteState(&w, st)
		if got, ok := w.kv[string(key)]; !ok || !bytes.Equal(got, value) {
			t.Fatalf("re-encoding %q: %x, want %x", key, got, value)
		}
		// The decoded state builds a store.
		if _, err := NewStore(&w, Options{}); err != nil {
			t.Fatal(err)
		}
	})
}
