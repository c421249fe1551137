package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

const (
	rootUser = "root"
	rootRole = "root"
)

// rootPerm is what RoleGet reports for the root role (etcd rootPerm).
var rootPerm = authpb.Permission{PermType: authpb.READWRITE, Key: []byte{}, RangeEnd: []byte{0}}

// AuthInfo identifies the user of a request and the auth revision under
// which the request was authorized. Revision 0 means no user.
type AuthInfo struct {
	Username string
	Revision uint64
}

// Options configures NewStore.
type Options struct {
	// Logger. Default zap.NewNop().
	Logger *zap.Logger
	// BcryptCost is --bcrypt-cost, used by HashPassword callers via
	// BcryptCost and by the legacy plain-password apply path. Must be in
	// [bcrypt.MinCost, bcrypt.MaxCost]; 0 means bcrypt.DefaultCost (10).
	BcryptCost int
	// TokenProvider issues tokens. Default: the no-op provider (etcd's
	// empty --auth-token), with which Authenticate fails.
	TokenProvider TokenProvider
}

// Validate reports every invalid field.
func (o *Options) Validate() error {
	var errs []string
	if o.BcryptCost != 0 && (o.BcryptCost < bcrypt.MinCost || o.BcryptCost > bcrypt.MaxCost) {
		errs = append(errs, fmt.Sprintf("bcrypt cost %d outside [%d, %d]", o.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost))
	}
	if len(errs) > 0 {
		return fmt.Errorf("auth: invalid options: %s", strings.Join(errs, "; "))
	}
	return nil
}

func (o *Options) fillDefaults() {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.BcryptCost == 0 {
		o.BcryptCost = bcrypt.DefaultCost
	}
	if o.TokenProvider == nil {
		o.TokenProvider = tokenNop{}
	}
}

// Store is etcd's auth store with a lock-free read path.
//
// Every reader (permission checks, token resolution, Get/List) loads one
// immutable snapshot through an atomic pointer and never blocks. Mutations
// (the apply methods, called by the single apply goroutine in raft order)
// serialize on mu, build a new snapshot copy-on-write, emit their writes to
// the caller's Writer and publish the snapshot before returning. Publishing
// before the caller commits its batch is safe: the batch also carries the
// raft applied index, so after a crash the entry is applied again, and a
// failed commit is fatal to the server.
type Store struct {
	lg         *zap.Logger
	bcryptCost int
	tp         TokenProvider

	snap atomic.Pointer[snapshot]

	mu sync.Mutex // serializes mutations; readers never take it
}

// snapshot is one immutable auth state. Nothing reachable from a published
// snapshot is ever modified: mutations copy what they change.
type snapshot struct {
	enabled  bool
	revision uint64
	users    map[string]*userEntry
	roles    map[string]*authpb.Role
}

type userEntry struct {
	user  *authpb.User
	root  bool // has the root role
	perms *userPerms
}

func (sn *snapshot) clone() *snapshot {
	n := &snapshot{
		enabled:  sn.enabled,
		revision: sn.revision,
		users:    make(map[string]*userEntry, len(sn.users)+1),
		roles:    make(map[string]*authpb.Role, len(sn.roles)+1),
	}
	for k, v := range sn.users {
		n.users[k] = v
	}
	for k, v := range sn.roles {
		n.roles[k] = v
	}
	return n
}

// setUser installs u (which must not be modified afterwards) and recomputes
// its merged permissions from n.roles.
func (n *snapshot) setUser(u *authpb.User) {
	n.users[string(u.Name)] = &userEntry{user: u, root: hasRootRole(u), perms: mergePerms(u.Roles, n.roles)}
}

// refreshRole recomputes the permissions of every user holding role.
func (n *snapshot) refreshRole(role string) {
	for _, e := range n.users {
		if i := sort.SearchStrings(e.user.Roles, role); i < len(e.user.Roles) && e.user.Roles[i] == role {
			n.setUser(e.user)
		}
	}
}

func hasRootRole(u *authpb.User) bool {
	i := sort.SearchStrings(u.Roles, rootRole)
	return i < len(u.Roles) && u.Roles[i] == rootRole
}

// NewStore loads the persisted state from be. A persisted revision of 0 (a
// fresh store) starts at 1, as etcd's NewAuthStore commits; the 1 reaches
// disk with the first auth change, and until then every member derives it
// the same way.
func NewStore(be Backend, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.fillDefaults()
	s := &Store{lg: opts.Logger, bcryptCost: opts.BcryptCost, tp: opts.TokenProvider}
	if err := s.Recover(be); err != nil {
		return nil, err
	}
	return s, nil
}

// Recover replaces the state with be's (start-up and snapshot restore) and
// enables or disables the token provider to match; disabling drops all
// tokens.
func (s *Store) Recover(be Backend) error {
	st, err := be.Load()
	if err != nil {
		return err
	}
	n := &snapshot{
		enabled:  st.Enabled,
		revision: max(st.Revision, 1),
		users:    make(map[string]*userEntry, len(st.Users)),
		roles:    make(map[string]*authpb.Role, len(st.Roles)),
	}
	for _, r := range st.Roles {
		n.roles[string(r.Name)] = r
	}
	for _, u := range st.Users {
		n.setUser(u)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.Store(n)
	if n.enabled {
		s.tp.Enable()
	} else {
		s.tp.Disable()
	}
	return nil
}

// Close stops the token provider's background work.
func (s *Store) Close() error {
	s.tp.Disable()
	return nil
}

// IsAuthEnabled reports the enabled flag.
func (s *Store) IsAuthEnabled() bool { return s.snap.Load().enabled }

// Revision returns the auth revision.
func (s *Store) Revision() uint64 { return s.snap.Load().revision }

// BcryptCost returns the configured bcrypt cost.
func (s *Store) BcryptCost() int { return s.bcryptCost }

// HasRole reports whether user exists and holds role.
func (s *Store) HasRole(user, role string) bool {
	e := s.snap.Load().users[user]
	if e == nil {
		return false
	}
	i := sort.SearchStrings(e.user.Roles, role)
	return i < len(e.user.Roles) && e.user.Roles[i] == role
}

// commitRevision bumps n's revision and writes it.
func commitRevision(w Writer, n *snapshot) {
	n.revision++
	w.Put([]byte(keyRevision), encodeRevision(n.revision))
}

// ---- Passwords, before raft ----

// HashPassword returns the bcrypt hash of pw at cost. It is slow by design:
// call it before proposing, never on the apply goroutine. bcrypt rejects
// passwords over 72 bytes (bcrypt.ErrPasswordTooLong).
func HashPassword(pw string, cost int) ([]byte, error) {
	return bcrypt.GenerateFromPassword([]byte(pw), cost)
}

// PrepareUserAdd replaces r.Password by r.HashedPassword (base64 of the
// bcrypt hash) unless the user has no password, as etcd's
// EtcdServer.UserAdd does before proposing, so that no plain password
// reaches the raft log.
func (s *Store) PrepareUserAdd(r *pb.AuthUserAddRequest) error {
	if r.Options == nil || !r.Options.NoPassword {
		h, err := HashPassword(r.Password, s.bcryptCost)
		if err != nil {
			return err
		}
		r.HashedPassword = base64.StdEncoding.EncodeToString(h)
		r.Password = ""
	}
	return nil
}

// PrepareUserChangePassword is PrepareUserAdd for password changes (etcd
// EtcdServer.UserChangePassword): hashes only when r.Password is set.
func (s *Store) PrepareUserChangePassword(r *pb.AuthUserChangePasswordRequest) error {
	if r.Password != "" {
		h, err := HashPassword(r.Password, s.bcryptCost)
		if err != nil {
			return err
		}
		r.HashedPassword = base64.StdEncoding.EncodeToString(h)
		r.Password = ""
	}
	return nil
}

// selectPassword returns the hash to store: the decoded HashedPassword, or,
// for entries carrying a plain password and no hash (etcd < 3.5 proposers),
// a hash computed here.
func (s *Store) selectPassword(password, hashed string) ([]byte, error) {
	if password != "" && hashed == "" {
		return bcrypt.GenerateFromPassword([]byte(password), s.bcryptCost)
	}
	return base64.StdEncoding.DecodeString(hashed)
}

// ---- Authentication ----

// CheckPassword verifies password for username before raft (etcd
// AuthStore.CheckPassword) and returns the auth revision it checked at. The
// bcrypt comparison runs outside any lock. Errors: ErrAuthNotEnabled,
// ErrAuthFailed (unknown user or wrong password), ErrNoPasswordUser.
//
// The server then proposes an InternalAuthenticateRequest{Name,
// SimpleToken: GenTokenPrefix()} without the password and, after it
// applies, retries the whole exchange if Revision() != the returned
// revision (the password may have changed in between).
func (s *Store) CheckPassword(username, password string) (uint64, error) {
	sn := s.snap.Load()
	if !sn.enabled {
		return 0, ErrAuthNotEnabled
	}
	e := sn.users[username]
	if e == nil {
		return 0, ErrAuthFailed
	}
	if e.user.Options != nil && e.user.Options.NoPassword {
		return 0, ErrNoPasswordUser
	}
	if bcrypt.CompareHashAndPassword(e.user.Password, []byte(password)) != nil {
		s.lg.Info("invalid password", zap.String("user-name", username))
		return 0, ErrAuthFailed
	}
	return sn.revision, nil
}

// GenTokenPrefix returns the random simple-token prefix the proposer puts
// in InternalAuthenticateRequest.SimpleToken ("" for JWT).
func (s *Store) GenTokenPrefix() (string, error) { return s.tp.GenTokenPrefix() }

// Authenticate applies an InternalAuthenticateRequest at raft index index
// and issues the token (etcd authStore.Authenticate; the password was
// checked by CheckPassword). Errors: ErrAuthNotEnabled, ErrAuthFailed.
func (s *Store) Authenticate(ctx context.Context, r *pb.InternalAuthenticateRequest, index uint64) (*pb.AuthenticateResponse, error) {
	sn := s.snap.Load()
	if !sn.enabled {
		return nil, ErrAuthNotEnabled
	}
	e := sn.users[r.Name]
	if e == nil {
		return nil, ErrAuthFailed
	}
	if e.user.Options != nil && e.user.Options.NoPassword {
		return nil, ErrAuthFailed
	}
	token, err := s.tp.Assign(ctx, TokenParams{Username: r.Name, Revision: sn.revision, Index: index, Prefix: r.SimpleToken})
	if err != nil {
		return nil, err
	}
	if ce := s.lg.Check(zap.DebugLevel, "authenticated a user"); ce != nil {
		ce.Write(zap.String("user-name", r.Name), zap.String("token-fingerprint", redactToken(token)))
	}
	return &pb.AuthenticateResponse{Token: token}, nil
}

// AuthInfoFromToken resolves token. With auth disabled it returns (nil,
// nil); an unknown, expired or badly signed token is ErrInvalidAuthToken.
func (s *Store) AuthInfoFromToken(ctx context.Context, token string) (*AuthInfo, error) {
	sn := s.snap.Load()
	if !sn.enabled {
		return nil, nil
	}
	ai, ok := s.tp.Info(ctx, token, sn.revision)
	if !ok {
		s.lg.Warn("invalid auth token", zap.String("token-fingerprint", redactToken(token)))
		return nil, ErrInvalidAuthToken
	}
	return ai, nil
}

// AuthInfoFromCtx reads the token from incoming gRPC metadata "token" (or
// "authorization", with an optional "Bearer " prefix, for the gateway) as
// etcd does. (nil, nil) when auth is disabled or no token was sent.
func (s *Store) AuthInfoFromCtx(ctx context.Context) (*AuthInfo, error) {
	if !s.IsAuthEnabled() {
		return nil, nil
	}
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return nil, nil
	}
	ts, ok := md[rpctypes.TokenFieldNameGRPC]
	if !ok {
		ts, ok = md[rpctypes.TokenFieldNameSwagger]
	}
	if !ok || len(ts) == 0 {
		return nil, nil
	}
	return s.AuthInfoFromToken(ctx, strings.TrimPrefix(ts[0], "Bearer "))
}

// AuthInfoFromTLS returns the user named by the common name of the verified
// client certificate (etcd --client-cert-auth), or nil. Requests through
// the gRPC gateway (metadata "grpcgateway-accept") are never authenticated
// this way: the gateway uses the server's own client certificate.
func (s *Store) AuthInfoFromTLS(ctx context.Context) *AuthInfo {
	p, ok := peer.FromContext(ctx)
	if !ok || p == nil || p.AuthInfo == nil {
		return nil
	}
	tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	for _, chain := range tlsInfo.State.VerifiedChains {
		if len(chain) < 1 {
			continue
		}
		md, ok := metadata.FromIncomingContext(ctx)
		if !ok {
			return nil
		}
		if gw := md["grpcgateway-accept"]; len(gw) > 0 {
			s.lg.Warn("ignoring common name in gRPC-gateway proxy request", zap.String("common-name", chain[0].Subject.CommonName))
			return nil
		}
		return &AuthInfo{Username: chain[0].Subject.CommonName, Revision: s.Revision()}
	}
	return nil
}

// ---- Permission checks (hot path, lock-free) ----

// IsPutPermitted checks WRITE on key. With auth disabled every check
// passes. Errors: ErrUserEmpty (nil AuthInfo or revision 0: no user),
// ErrAuthOldRevision (ai.Revision < the store's revision: an auth change
// happened after the request was authorized), ErrPermissionDenied.
func (s *Store) IsPutPermitted(ai *AuthInfo, key []byte) error {
	return s.isOpPermitted(ai, key, nil, true)
}

// IsRangePermitted checks READ on [key, rangeEnd) (etcd range conventions).
// Errors as IsPutPermitted.
func (s *Store) IsRangePermitted(ai *AuthInfo, key, rangeEnd []byte) error {
	return s.isOpPermitted(ai, key, rangeEnd, false)
}

// IsDeleteRangePermitted checks WRITE on [key, rangeEnd). Errors as
// IsPutPermitted.
func (s *Store) IsDeleteRangePermitted(ai *AuthInfo, key, rangeEnd []byte) error {
	return s.isOpPermitted(ai, key, rangeEnd, true)
}

// isOpPermitted reads one snapshot, so the revision compared and the
// permissions checked belong to the same state: a request authorized at
// revision R is judged by the permissions of revision R or rejected.
func (s *Store) isOpPermitted(ai *AuthInfo, key, rangeEnd []byte, write bool) error {
	sn := s.snap.Load()
	if !sn.enabled {
		return nil
	}
	if ai == nil || ai.Revision == 0 {
		return ErrUserEmpty
	}
	if ai.Revision < sn.revision {
		s.lg.Warn("request auth revision is less than current node auth revision",
			zap.Uint64("current node auth revision", sn.revision),
			zap.Uint64("request auth revision", ai.Revision),
			zap.ByteString("request key", key),
			zap.Error(ErrAuthOldRevision))
		return ErrAuthOldRevision
	}
	e := sn.users[ai.Username]
	if e == nil {
		s.lg.Error("cannot find a user for permission check", zap.String("user-name", ai.Username))
		return ErrPermissionDenied
	}
	if e.root {
		return nil
	}
	set := &e.perms.read
	if write {
		set = &e.perms.write
	}
	if set.containsRange(key, rangeEnd) {
		return nil
	}
	return ErrPermissionDenied
}

// IsAdminPermitted checks that ai's user holds the root role. Like etcd it
// does not compare revisions. Errors: ErrUserEmpty, ErrUserNotFound,
// ErrPermissionDenied.
func (s *Store) IsAdminPermitted(ai *AuthInfo) error {
	sn := s.snap.Load()
	if !sn.enabled {
		return nil
	}
	if ai == nil || ai.Username == "" {
		return ErrUserEmpty
	}
	e := sn.users[ai.Username]
	if e == nil {
		return ErrUserNotFound
	}
	if !e.root {
		return ErrPermissionDenied
	}
	return nil
}

// ---- Reads ----

// UserGet returns the roles of r.Name. Errors: ErrUserNotFound.
func (s *Store) UserGet(r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	e := s.snap.Load().users[r.Name]
	if e == nil {
		return nil, ErrUserNotFound
	}
	var resp pb.AuthUserGetResponse
	resp.Roles = append(resp.Roles, e.user.Roles...)
	return &resp, nil
}

// UserList returns all user names in byte order.
func (s *Store) UserList(*pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	users := s.snap.Load().users
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	sort.Strings(names)
	return &pb.AuthUserListResponse{Users: names}, nil
}

// RoleGet returns the permissions of r.Role; the root role reports the
// single READWRITE permission on all keys. Errors: ErrRoleNotFound.
func (s *Store) RoleGet(r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	role := s.snap.Load().roles[r.Role]
	if role == nil {
		return nil, ErrRoleNotFound
	}
	var resp pb.AuthRoleGetResponse
	if r.Role == rootRole {
		p := rootPerm
		resp.Perm = append(resp.Perm, &p)
		return &resp, nil
	}
	for _, p := range role.KeyPermission {
		c := *p
		resp.Perm = append(resp.Perm, &c)
	}
	return &resp, nil
}

// RoleList returns all role names in byte order.
func (s *Store) RoleList(*pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	roles := s.snap.Load().roles
	names := make([]string, 0, len(roles))
	for n := range roles {
		names = append(names, n)
	}
	sort.Strings(names)
	return &pb.AuthRoleListResponse{Roles: names}, nil
}

// cloneBytes returns a copy of b that never aliases a request buffer.
func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return bytes.Clone(b)
}
