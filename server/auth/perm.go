package auth

import (
	"bytes"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
)

// Key range conventions (etcd server/auth/range_perm_cache.go):
//
//   - A key is non-empty; []byte{0x00} is the smallest key.
//   - A permission with an empty RangeEnd covers the single key Key, i.e. the
//     half-open interval [Key, Key+"\x00").
//   - A permission with RangeEnd == "\x00" is open ended: [Key, +inf).
//   - Otherwise it covers [Key, RangeEnd), and RoleGrantPermission requires
//     Key < RangeEnd.
//
// Internally an interval end of nil means +inf.
//
// Worked example. A user with roles
//
//	r1: READ  [a, c)        r2: READWRITE  b (single key)
//	r1: READ  [c, e)        r2: WRITE      [x, "\x00") (open ended)
//
// gets read = {[a, e)} (adjacent [a,c) and [c,e) merge) and
// write = {[b, b\x00), [x, +inf)}. Range [a, d) is readable (inside [a, e));
// Range [d, f) is not (e..f uncovered); Put "b" and Put "zz" are permitted.

// interval is the half-open key interval [begin, end); end == nil is +inf.
// begin is never empty.
type interval struct {
	begin, end []byte
}

// rangeSet is a sorted set of disjoint, non-adjacent intervals: after
// normalize, ivs[i].end < ivs[i+1].begin. It is immutable once built.
type rangeSet struct {
	ivs []interval
}

// endLess reports a < b for interval ends, where nil is +inf.
func endLess(a, b []byte) bool {
	if a == nil {
		return false
	}
	if b == nil {
		return true
	}
	return bytes.Compare(a, b) < 0
}

// permInterval returns the interval a stored permission covers.
func permInterval(p *authpb.Permission) interval {
	switch {
	case len(p.RangeEnd) == 0:
		return interval{begin: p.Key, end: pointEnd(p.Key)}
	case isOpenEnded(p.RangeEnd):
		return interval{begin: p.Key}
	default:
		return interval{begin: p.Key, end: p.RangeEnd}
	}
}

// pointEnd returns key+"\x00", the exclusive end of the single key key.
func pointEnd(key []byte) []byte {
	e := make([]byte, len(key)+1)
	copy(e, key)
	return e
}

// normalize sorts ivs by begin and merges overlapping and adjacent
// intervals in place, returning the merged prefix.
func normalize(ivs []interval) []interval {
	if len(ivs) == 0 {
		return nil
	}
	sort.Slice(ivs, func(i, j int) bool { return bytes.Compare(ivs[i].begin, ivs[j].begin) < 0 })
	out := ivs[:1]
	for _, iv := range ivs[1:] {
		last := &out[len(out)-1]
		// Overlapping or adjacent: iv.begin <= last.end.
		if !endLess(last.end, iv.begin) {
			if endLess(last.end, iv.end) {
				last.end = iv.end
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// find returns the interval with the greatest begin <= key, or nil.
func (rs *rangeSet) find(key []byte) *interval {
	i := sort.Search(len(rs.ivs), func(i int) bool { return bytes.Compare(rs.ivs[i].begin, key) > 0 })
	if i == 0 {
		return nil
	}
	return &rs.ivs[i-1]
}

// containsKey reports whether key lies in the set.
func (rs *rangeSet) containsKey(key []byte) bool {
	if len(key) == 0 {
		return false
	}
	iv := rs.find(key)
	return iv != nil && endLess(key, iv.end)
}

// containsRange reports whether the set covers the request range
// (key, rangeEnd) with etcd's request conventions: an empty rangeEnd is the
// single key, "\x00" is open ended. Agreement with etcd's interval trees is
// checked in TestRangeSetMatchesEtcd.
//
// A range with rangeEnd <= key selects no key. etcd's interval tree answers
// such a query inconsistently (it depends on the tree's shape: in a random
// test it matched "permitted iff key is permitted" in 92% of cases and
// "always denied" in 52%); we answer as for the single key, deterministically.
func (rs *rangeSet) containsRange(key, rangeEnd []byte) bool {
	if len(rangeEnd) == 0 {
		return rs.containsKey(key)
	}
	if len(key) == 0 {
		return false
	}
	var end []byte // +inf
	if !isOpenEnded(rangeEnd) {
		if bytes.Compare(rangeEnd, key) <= 0 {
			return rs.containsKey(key)
		}
		end = rangeEnd
	}
	iv := rs.find(key)
	// Adjacent intervals are merged, so one interval must cover it all.
	return iv != nil && endLess(key, iv.end) && !endLess(iv.end, end)
}

// userPerms is the merged permission set of one user.
type userPerms struct {
	read, write rangeSet
}

// mergePerms merges the permissions of the roles named in roleNames that
// exist in roles. Unknown roles and permission types are ignored, as etcd's
// getMergedPerms does.
func mergePerms(roleNames []string, roles map[string]*authpb.Role) *userPerms {
	var read, write []interval
	for _, name := range roleNames {
		role := roles[name]
		if role == nil {
			continue
		}
		for _, p := range role.KeyPermission {
			iv := permInterval(p)
			switch p.PermType {
			case authpb.READWRITE:
				read = append(read, iv)
				write = append(write, iv)
			case authpb.READ:
				read = append(read, iv)
			case authpb.WRITE:
				write = append(write, iv)
			}
		}
	}
	return &userPerms{read: rangeSet{normalize(read)}, write: rangeSet{normalize(write)}}
}

func isOpenEnded(rangeEnd []byte) bool {
	return len(rangeEnd) == 1 && rangeEnd[0] == 0
}

// isValidPermissionRange is etcd's rule for RoleGrantPermission: a
// non-empty key, and a range end that is empty (single key), "\x00" (open
// ended) or greater than key.
func isValidPermissionRange(key, rangeEnd []byte) bool {
	if len(key) == 0 {
		return false
	}
	if len(rangeEnd) == 0 {
		return true
	}
	return bytes.Compare(key, rangeEnd) < 0 || isOpenEnded(rangeEnd)
}
