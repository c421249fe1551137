// Package auth is MetaStore's equivalent of etcd v3.6 server/auth: users,
// roles, key-range permissions, the enabled flag and the auth revision, with
// etcd's rules, errors (errors.go) and token formats ("simple" and "jwt").
//
// Contract:
//
//   - Mutations are the apply methods (apply.go). They must be called by the
//     single apply goroutine in raft order with a Writer that goes in the same
//     batch as the raft applied index. Passwords are hashed before raft
//     (PrepareUserAdd, PrepareUserChangePassword); no plain password is
//     stored, logged or replicated.
//   - Everything else (permission checks, token resolution, Get/List) is safe
//     from any goroutine and lock-free: it reads one immutable snapshot
//     through an atomic pointer, rebuilt copy-on-write by each mutation.
//   - The auth revision starts at 1 and grows by one with every change but
//     AuthEnable (as in etcd). A request authorized at revision R is checked
//     against the permissions of revision R exactly, or fails with
//     ErrAuthOldRevision when the store has moved past R.
//   - With auth disabled every permission check passes.
//
// Invariants of a snapshot: each user's roles are sorted and unique; each
// user's read and write permission sets are sorted, disjoint, non-adjacent
// intervals (perm.go), so a check is one binary search.
//
// Persistence is documented in encoding.go.
package auth
