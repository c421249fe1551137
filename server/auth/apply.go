package auth

import (
	"bytes"
	"sort"

	"go.uber.org/zap"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Apply methods. Each is called by the single apply goroutine in raft
// order, validates against the current state with etcd v3.6's rules and
// errors, and on success writes its changes to w and publishes the new state.
// On error nothing is written and the state is unchanged. Every successful
// change bumps the revision except AuthEnable (etcd does not bump it there)
// and a UserGrantRole of an already granted role (a no-op in etcd). Response
// headers are left to the caller.

// begin locks s.mu and returns a mutable copy of the state.
// The caller must call s.mu.Unlock.
func (s *Store) begin() *snapshot {
	s.mu.Lock()
	return s.snap.Load().clone()
}

// AuthEnable turns authentication on. Errors: ErrRootUserNotExist,
// ErrRootRoleNotExist (root user without the root role). Enabling an
// enabled store is a no-op.
func (s *Store) AuthEnable(w Writer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.snap.Load()
	if cur.enabled {
		s.lg.Info("authentication is already enabled; ignored auth enable request")
		return nil
	}
	u := cur.users[rootUser]
	if u == nil {
		return ErrRootUserNotExist
	}
	if !u.root {
		return ErrRootRoleNotExist
	}
	n := cur.clone()
	n.enabled = true
	w.Put([]byte(keyEnabled), encodeEnabled(true))
	s.snap.Store(n)
	s.tp.Enable()
	s.lg.Info("enabled authentication")
	return nil
}

// AuthDisable turns authentication off and drops all simple tokens.
// Disabling a disabled store is a no-op.
func (s *Store) AuthDisable(w Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.snap.Load()
	if !cur.enabled {
		return
	}
	n := cur.clone()
	n.enabled = false
	w.Put([]byte(keyEnabled), encodeEnabled(false))
	commitRevision(w, n)
	s.snap.Store(n)
	s.tp.Disable()
	s.lg.Info("disabled authentication")
}

// UserAdd adds a user. r.HashedPassword is the base64 bcrypt hash made by
// PrepareUserAdd before raft; a request with Password and no hash is hashed
// here (legacy). Errors: ErrUserEmpty, ErrUserAlreadyExist,
// ErrNoPasswordUser (HashedPassword is not valid base64; etcd's mapping).
func (s *Store) UserAdd(w Writer, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	if len(r.Name) == 0 {
		return nil, ErrUserEmpty
	}
	n := s.begin()
	defer s.mu.Unlock()
	if n.users[r.Name] != nil {
		return nil, ErrUserAlreadyExist
	}
	options := r.Options
	if options == nil {
		options = &authpb.UserAddOptions{NoPassword: false}
	}
	var password []byte
	if !options.NoPassword {
		var err error
		if password, err = s.selectPassword(r.Password, r.HashedPassword); err != nil {
			return nil, ErrNoPasswordUser
		}
	}
	u := &authpb.User{Name: []byte(r.Name), Password: password, Options: &authpb.UserAddOptions{NoPassword: options.NoPassword}}
	s.putUser(w, n, u)
	commitRevision(w, n)
	s.snap.Store(n)
	s.lg.Info("added a user", zap.String("user-name", r.Name))
	return &pb.AuthUserAddResponse{}, nil
}

func (s *Store) putUser(w Writer, n *snapshot, u *authpb.User) {
	w.Put(userKey(string(u.Name)), mustMarshal(u))
	n.setUser(u)
}

// UserDelete deletes a user and invalidates its tokens. Errors:
// ErrInvalidAuthMgmt (deleting root while auth is enabled),
// ErrUserNotFound.
func (s *Store) UserDelete(w Writer, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	n := s.begin()
	defer s.mu.Unlock()
	if n.enabled && r.Name == rootUser {
		s.lg.Error("cannot delete 'root' user", zap.String("user-name", r.Name))
		return nil, ErrInvalidAuthMgmt
	}
	e := n.users[r.Name]
	if e == nil {
		return nil, ErrUserNotFound
	}
	w.Delete(userKey(r.Name))
	delete(n.users, r.Name)
	commitRevision(w, n)
	s.snap.Store(n)
	s.tp.InvalidateUser(r.Name)
	s.lg.Info("deleted a user", zap.String("user-name", r.Name), zap.Strings("user-roles", e.user.Roles))
	return &pb.AuthUserDeleteResponse{}, nil
}

// UserChangePassword replaces the hash (see UserAdd) and invalidates the
// user's tokens; for a no-password user it stores no hash. Errors:
// ErrUserNotFound, ErrNoPasswordUser (bad base64).
func (s *Store) UserChangePassword(w Writer, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	n := s.begin()
	defer s.mu.Unlock()
	e := n.users[r.Name]
	if e == nil {
		return nil, ErrUserNotFound
	}
	var password []byte
	if e.user.Options == nil || !e.user.Options.NoPassword {
		var err error
		if password, err = s.selectPassword(r.Password, r.HashedPassword); err != nil {
			return nil, ErrNoPasswordUser
		}
	}
	s.putUser(w, n, &authpb.User{Name: []byte(r.Name), Roles: e.user.Roles, Password: password, Options: e.user.Options})
	commitRevision(w, n)
	s.snap.Store(n)
	s.tp.InvalidateUser(r.Name)
	s.lg.Info("changed a password of a user", zap.String("user-name", r.Name), zap.Strings("user-roles", e.user.Roles))
	return &pb.AuthUserChangePasswordResponse{}, nil
}

// UserGrantRole grants r.Role to r.User; the root role need not exist as a
// role. Granting a held role succeeds without change. Errors:
// ErrUserNotFound, ErrRoleNotFound.
func (s *Store) UserGrantRole(w Writer, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	n := s.begin()
	defer s.mu.Unlock()
	e := n.users[r.User]
	if e == nil {
		return nil, ErrUserNotFound
	}
	if r.Role != rootRole && n.roles[r.Role] == nil {
		return nil, ErrRoleNotFound
	}
	i := sort.SearchStrings(e.user.Roles, r.Role)
	if i < len(e.user.Roles) && e.user.Roles[i] == r.Role {
		s.lg.Warn("ignored grant role request to a user", zap.String("user-name", r.User),
			zap.Strings("user-roles", e.user.Roles), zap.String("duplicate-role-name", r.Role))
		return &pb.AuthUserGrantRoleResponse{}, nil
	}
	roles := make([]string, 0, len(e.user.Roles)+1)
	roles = append(roles, e.user.Roles[:i]...)
	roles = append(roles, r.Role)
	roles = append(roles, e.user.Roles[i:]...)
	s.putUser(w, n, &authpb.User{Name: e.user.Name, Password: e.user.Password, Roles: roles, Options: e.user.Options})
	commitRevision(w, n)
	s.snap.Store(n)
	s.lg.Info("granted a role to a user", zap.String("user-name", r.User),
		zap.Strings("user-roles", roles), zap.String("added-role-name", r.Role))
	return &pb.AuthUserGrantRoleResponse{}, nil
}

// UserRevokeRole revokes r.Role from r.Name. Errors: ErrInvalidAuthMgmt
// (revoking root from root while auth is enabled), ErrUserNotFound,
// ErrRoleNotGranted.
func (s *Store) UserRevokeRole(w Writer, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	n := s.begin()
	defer s.mu.Unlock()
	if n.enabled && r.Name == rootUser && r.Role == rootRole {
		s.lg.Error("'root' user cannot revoke 'root' role", zap.String("user-name", r.Name), zap.String("role-name", r.Role))
		return nil, ErrInvalidAuthMgmt
	}
	e := n.users[r.Name]
	if e == nil {
		return nil, ErrUserNotFound
	}
	roles := without(e.user.Roles, r.Role)
	if len(roles) == len(e.user.Roles) {
		return nil, ErrRoleNotGranted
	}
	s.putUser(w, n, &authpb.User{Name: e.user.Name, Password: e.user.Password, Roles: roles, Options: e.user.Options})
	commitRevision(w, n)
	s.snap.Store(n)
	s.lg.Info("revoked a role from a user", zap.String("user-name", r.Name),
		zap.Strings("old-user-roles", e.user.Roles), zap.Strings("new-user-roles", roles), zap.String("revoked-role-name", r.Role))
	return &pb.AuthUserRevokeRoleResponse{}, nil
}

// without returns a new slice of roles minus role (nil when empty, like
// etcd's append-built slice).
func without(roles []string, role string) []string {
	var out []string
	for _, r := range roles {
		if r != role {
			out = append(out, r)
		}
	}
	return out
}

// RoleAdd adds an empty role. Errors: ErrRoleEmpty, ErrRoleAlreadyExist.
func (s *Store) RoleAdd(w Writer, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	if len(r.Name) == 0 {
		return nil, ErrRoleEmpty
	}
	n := s.begin()
	defer s.mu.Unlock()
	if n.roles[r.Name] != nil {
		return nil, ErrRoleAlreadyExist
	}
	role := &authpb.Role{Name: []byte(r.Name)}
	w.Put(roleKey(r.Name), mustMarshal(role))
	n.roles[r.Name] = role
	// Only "root" can be held before it exists (UserGrantRole allows it);
	// refreshing its holders keeps the permission sets exact regardless.
	n.refreshRole(r.Name)
	commitRevision(w, n)
	s.snap.Store(n)
	s.lg.Info("created a role", zap.String("role-name", r.Name))
	return &pb.AuthRoleAddResponse{}, nil
}

// RoleDelete deletes a role and revokes it from every user. Errors:
// ErrInvalidAuthMgmt (deleting root while auth is enabled),
// ErrRoleNotFound.
func (s *Store) RoleDelete(w Writer, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	n := s.begin()
	defer s.mu.Unlock()
	if n.enabled && r.Role == rootRole {
		s.lg.Error("cannot delete 'root' role", zap.String("role-name", r.Role))
		return nil, ErrInvalidAuthMgmt
	}
	if n.roles[r.Role] == nil {
		return nil, ErrRoleNotFound
	}
	w.Delete(roleKey(r.Role))
	delete(n.roles, r.Role)
	var holders []*authpb.User
	for _, e := range n.users {
		if roles := without(e.user.Roles, r.Role); len(roles) != len(e.user.Roles) {
			holders = append(holders, &authpb.User{Name: e.user.Name, Password: e.user.Password, Roles: roles, Options: e.user.Options})
		}
	}
	// Write in name order so the batch is identical on every member.
	sort.Slice(holders, func(i, j int) bool { return bytes.Compare(holders[i].Name, holders[j].Name) < 0 })
	for _, u := range holders {
		s.putUser(w, n, u)
	}
	commitRevision(w, n)
	s.snap.Store(n)
	s.lg.Info("deleted a role", zap.String("role-name", r.Role))
	return &pb.AuthRoleDeleteResponse{}, nil
}

// permSlice sorts permissions by key with sort.Sort, as etcd does, so the
// order of permissions sharing a key (and thus RoleGet's output) matches.
type permSlice []*authpb.Permission

func (p permSlice) Len() int           { return len(p) }
func (p permSlice) Less(i, j int) bool { return bytes.Compare(p[i].Key, p[j].Key) < 0 }
func (p permSlice) Swap(i, j int)      { p[i], p[j] = p[j], p[i] }

// RoleGrantPermission adds r.Perm to role r.Name, or updates the type of
// an equal (key, range end) permission. Like etcd it looks for the equal
// permission only at the first one with the same key. Errors:
// ErrPermissionNotGiven, ErrInvalidAuthMgmt (invalid range),
// ErrRoleNotFound.
func (s *Store) RoleGrantPermission(w Writer, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	if r.Perm == nil {
		return nil, ErrPermissionNotGiven
	}
	if !isValidPermissionRange(r.Perm.Key, r.Perm.RangeEnd) {
		return nil, ErrInvalidAuthMgmt
	}
	n := s.begin()
	defer s.mu.Unlock()
	old := n.roles[r.Name]
	if old == nil {
		return nil, ErrRoleNotFound
	}
	perms := make([]*authpb.Permission, len(old.KeyPermission), len(old.KeyPermission)+1)
	copy(perms, old.KeyPermission)
	idx := sort.Search(len(perms), func(i int) bool { return bytes.Compare(perms[i].Key, r.Perm.Key) >= 0 })
	if idx < len(perms) && bytes.Equal(perms[idx].Key, r.Perm.Key) && bytes.Equal(perms[idx].RangeEnd, r.Perm.RangeEnd) {
		p := *perms[idx]
		p.PermType = r.Perm.PermType
		perms[idx] = &p
	} else {
		perms = append(perms, &authpb.Permission{Key: cloneBytes(r.Perm.Key), RangeEnd: cloneBytes(r.Perm.RangeEnd), PermType: r.Perm.PermType})
		sort.Sort(permSlice(perms))
	}
	s.putRole(w, n, &authpb.Role{Name: old.Name, KeyPermission: perms})
	commitRevision(w, n)
	s.snap.Store(n)
	s.lg.Info("granted/updated a permission to a user", zap.String("user-name", r.Name),
		zap.String("permission-name", authpb.Permission_Type_name[int32(r.Perm.PermType)]),
		zap.ByteString("key", r.Perm.Key), zap.ByteString("range-end", r.Perm.RangeEnd))
	return &pb.AuthRoleGrantPermissionResponse{}, nil
}

func (s *Store) putRole(w Writer, n *snapshot, role *authpb.Role) {
	w.Put(roleKey(string(role.Name)), mustMarshal(role))
	n.roles[string(role.Name)] = role
	n.refreshRole(string(role.Name))
}

// RoleRevokePermission removes every permission of r.Role with exactly
// r.Key and r.RangeEnd. Errors: ErrRoleNotFound, ErrPermissionNotGranted.
func (s *Store) RoleRevokePermission(w Writer, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	n := s.begin()
	defer s.mu.Unlock()
	old := n.roles[r.Role]
	if old == nil {
		return nil, ErrRoleNotFound
	}
	var perms []*authpb.Permission
	for _, p := range old.KeyPermission {
		if !bytes.Equal(p.Key, r.Key) || !bytes.Equal(p.RangeEnd, r.RangeEnd) {
			perms = append(perms, p)
		}
	}
	if len(perms) == len(old.KeyPermission) {
		return nil, ErrPermissionNotGranted
	}
	s.putRole(w, n, &authpb.Role{Name: old.Name, KeyPermission: perms})
	commitRevision(w, n)
	s.snap.Store(n)
	s.lg.Info("revoked a permission on range", zap.String("role-name", r.Role),
		zap.String("key", string(r.Key)), zap.String("range-end", string(r.RangeEnd)))
	return &pb.AuthRoleRevokePermissionResponse{}, nil
}
