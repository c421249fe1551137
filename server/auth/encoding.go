package auth

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
)

// On-disk encoding. All auth state lives under KeyPrefix in the server's
// engine, next to (and written in the same batch as) the raft applied index:
//
//	auth/enabled       -> one byte: 0x00 disabled, 0x01 enabled
//	auth/revision      -> 8 bytes, big-endian uint64
//	auth/user/<name>   -> authpb.User, gogo-marshaled; User.Name == <name>
//	auth/role/<name>   -> authpb.Role, gogo-marshaled; Role.Name == <name>
//
// A missing auth/enabled means disabled; a missing auth/revision means 0.
// Decoding is strict: any other key under KeyPrefix, a value of the wrong
// length, a protobuf that does not re-marshal to the same bytes (unknown or
// duplicate fields, non-canonical encoding), a name that differs from the
// key, unsorted or duplicate roles in a user, or an invalid permission range
// is ErrCorruptState.
const (
	KeyPrefix   = "auth/"
	keyEnabled  = KeyPrefix + "enabled"
	keyRevision = KeyPrefix + "revision"
	prefixUser  = KeyPrefix + "user/"
	prefixRole  = KeyPrefix + "role/"
)

// State is the whole persisted auth state.
type State struct {
	Enabled  bool
	Revision uint64
	// Users and Roles are in any order; names are unique.
	Users []*authpb.User
	Roles []*authpb.Role
}

// Backend loads the persisted auth state at start-up and on snapshot
// restore. It is implemented by the server over its engine, typically as
// LoadState over a scan of KeyPrefix.
type Backend interface {
	Load() (State, error)
}

// Writer receives the writes of one apply call; the server puts all of them
// in the batch that also records the raft applied index, so auth state and
// applied index commit atomically. Implementations may retain key and value:
// the store never modifies them after the call.
type Writer interface {
	Put(key, value []byte)
	Delete(key []byte)
}

func userKey(name string) []byte { return []byte(prefixUser + name) }
func roleKey(name string) []byte { return []byte(prefixRole + name) }

func encodeEnabled(enabled bool) []byte {
	if enabled {
		return []byte{1}
	}
	return []byte{0}
}

func encodeRevision(rev uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, rev)
}

func mustMarshal(m interface{ Marshal() ([]byte, error) }) []byte {
	b, err := m.Marshal()
	if err != nil {
		// gogo Marshal of these messages only fails on programming errors.
		panic(fmt.Sprintf("auth: marshal: %v", err))
	}
	return b
}

// WriteState writes st in full to w (used to seed a backend and by tests).
func WriteState(w Writer, st State) {
	w.Put([]byte(keyEnabled), encodeEnabled(st.Enabled))
	w.Put([]byte(keyRevision), encodeRevision(st.Revision))
	for _, u := range st.Users {
		w.Put(userKey(string(u.Name)), mustMarshal(u))
	}
	for _, r := range st.Roles {
		w.Put(roleKey(string(r.Name)), mustMarshal(r))
	}
}

func corrupt(key []byte, format string, args ...any) error {
	return fmt.Errorf("%w: key %q: %s", ErrCorruptState, key, fmt.Sprintf(format, args...))
}

// DecodeKV strictly decodes one persisted key/value pair into st. It does
// not retain key or value.
func DecodeKV(key, value []byte, st *State) error {
	k := string(key)
	switch {
	case k == keyEnabled:
		if len(value) != 1 || value[0] > 1 {
			return corrupt(key, "enabled flag must be one byte 0 or 1, got %x", value)
		}
		st.Enabled = value[0] == 1
	case k == keyRevision:
		if len(value) != 8 {
			return corrupt(key, "revision must be 8 bytes, got %d", len(value))
		}
		st.Revision = binary.BigEndian.Uint64(value)
	case len(k) > len(prefixUser) && k[:len(prefixUser)] == prefixUser:
		u, err := decodeUser(k[len(prefixUser):], value)
		if err != nil {
			return corrupt(key, "%v", err)
		}
		st.Users = append(st.Users, u)
	case len(k) > len(prefixRole) && k[:len(prefixRole)] == prefixRole:
		r, err := decodeRole(k[len(prefixRole):], value)
		if err != nil {
			return corrupt(key, "%v", err)
		}
		st.Roles = append(st.Roles, r)
	default:
		return corrupt(key, "unknown key")
	}
	return nil
}

func decodeUser(name string, value []byte) (*authpb.User, error) {
	u := &authpb.User{}
	if err := u.Unmarshal(value); err != nil {
		return nil, err
	}
	if err := canonical(u, value); err != nil {
		return nil, err
	}
	if len(u.XXX_unrecognized) > 0 || (u.Options != nil && len(u.Options.XXX_unrecognized) > 0) {
		return nil, fmt.Errorf("unknown fields")
	}
	if string(u.Name) != name {
		return nil, fmt.Errorf("user name %q does not match key", u.Name)
	}
	for i, r := range u.Roles {
		if r == "" {
			return nil, fmt.Errorf("empty role name")
		}
		if i > 0 && u.Roles[i-1] >= r {
			return nil, fmt.Errorf("roles not sorted and unique: %q", u.Roles)
		}
	}
	return u, nil
}

func decodeRole(name string, value []byte) (*authpb.Role, error) {
	r := &authpb.Role{}
	if err := r.Unmarshal(value); err != nil {
		return nil, err
	}
	if err := canonical(r, value); err != nil {
		return nil, err
	}
	if len(r.XXX_unrecognized) > 0 {
		return nil, fmt.Errorf("unknown fields")
	}
	if string(r.Name) != name {
		return nil, fmt.Errorf("role name %q does not match key", r.Name)
	}
	for i, p := range r.KeyPermission {
		if p == nil || len(p.XXX_unrecognized) > 0 || !isValidPermissionRange(p.Key, p.RangeEnd) {
			return nil, fmt.Errorf("invalid permission range %d", i)
		}
		if i > 0 && bytes.Compare(r.KeyPermission[i-1].Key, p.Key) > 0 {
			return nil, fmt.Errorf("permissions not sorted by key")
		}
	}
	return r, nil
}

// canonical rejects encodings that gogo would not have produced: unknown
// fields, duplicated fields, non-minimal varints, out-of-order fields.
func canonical(m interface{ Marshal() ([]byte, error) }, value []byte) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	if !bytes.Equal(b, value) {
		return fmt.Errorf("non-canonical protobuf encoding")
	}
	return nil
}

// LoadState builds a State from a scan of the persisted pairs under
// KeyPrefix: scan must call fn once per pair, in any order, and return the
// first error fn returns. Duplicate user or role names are ErrCorruptState.
func LoadState(scan func(fn func(key, value []byte) error) error) (State, error) {
	var st State
	if err := scan(func(k, v []byte) error { return DecodeKV(k, v, &st) }); err != nil {
		return State{}, err
	}
	sort.Slice(st.Users, func(i, j int) bool { return bytes.Compare(st.Users[i].Name, st.Users[j].Name) < 0 })
	sort.Slice(st.Roles, func(i, j int) bool { return bytes.Compare(st.Roles[i].Name, st.Roles[j].Name) < 0 })
	for i := 1; i < len(st.Users); i++ {
		if bytes.Equal(st.Users[i-1].Name, st.Users[i].Name) {
			return State{}, corrupt(userKey(string(st.Users[i].Name)), "duplicate user")
		}
	}
	for i := 1; i < len(st.Roles); i++ {
		if bytes.Equal(st.Roles[i-1].Name, st.Roles[i].Name) {
			return State{}, corrupt(roleKey(string(st.Roles[i].Name)), "duplicate role")
		}
	}
	return st, nil
}
