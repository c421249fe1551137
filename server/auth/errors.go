package auth

import (
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Sentinel errors. Their texts are exactly those of etcd v3.6
// server/auth/store.go, so logs and unmapped errors read the same; at the
// gRPC edge convert them with GRPCError, which returns the rpctypes value etcd
// returns for the same request (clients match on those).
//
//	ErrRootUserNotExist     -> rpctypes.ErrGRPCRootUserNotExist
//	ErrRootRoleNotExist     -> rpctypes.ErrGRPCRootRoleNotExist
//	ErrUserAlreadyExist     -> rpctypes.ErrGRPCUserAlreadyExist
//	ErrUserEmpty            -> rpctypes.ErrGRPCUserEmpty
//	ErrUserNotFound         -> rpctypes.ErrGRPCUserNotFound
//	ErrRoleAlreadyExist     -> rpctypes.ErrGRPCRoleAlreadyExist
//	ErrRoleNotFound         -> rpctypes.ErrGRPCRoleNotFound
//	ErrRoleEmpty            -> rpctypes.ErrGRPCRoleEmpty
//	ErrAuthFailed           -> rpctypes.ErrGRPCAuthFailed
//	ErrPermissionNotGiven   -> rpctypes.ErrGRPCPermissionNotGiven
//	ErrPermissionDenied     -> rpctypes.ErrGRPCPermissionDenied
//	ErrRoleNotGranted       -> rpctypes.ErrGRPCRoleNotGranted
//	ErrPermissionNotGranted -> rpctypes.ErrGRPCPermissionNotGranted
//	ErrAuthNotEnabled       -> rpctypes.ErrGRPCAuthNotEnabled
//	ErrInvalidAuthToken     -> rpctypes.ErrGRPCInvalidAuthToken
//	ErrInvalidAuthMgmt      -> rpctypes.ErrGRPCInvalidAuthMgmt
//	ErrAuthOldRevision      -> rpctypes.ErrGRPCAuthOldRevision
//
// The others (ErrNoPasswordUser, ErrInvalidAuthOpts, ErrInvalidAuthMethod,
// ErrMissingKey, ErrKeyMismatch, ErrVerifyOnly) have no rpctypes counterpart:
// etcd sends them as codes.Unknown with their text, and so does GRPCError.
// ErrCorruptState is MetaStore's own and never reaches a client.
var (
	ErrRootUserNotExist     = errors.New("auth: root user does not exist")
	ErrRootRoleNotExist     = errors.New("auth: root user does not have root role")
	ErrUserAlreadyExist     = errors.New("auth: user already exists")
	ErrUserEmpty            = errors.New("auth: user name is empty")
	ErrUserNotFound         = errors.New("auth: user not found")
	ErrRoleAlreadyExist     = errors.New("auth: role already exists")
	ErrRoleNotFound         = errors.New("auth: role not found")
	ErrRoleEmpty            = errors.New("auth: role name is empty")
	ErrPermissionNotGiven   = errors.New("auth: permission not given")
	ErrAuthFailed           = errors.New("auth: authentication failed, invalid user ID or password")
	ErrNoPasswordUser       = errors.New("auth: authentication failed, password was given for no password user")
	ErrPermissionDenied     = errors.New("auth: permission denied")
	ErrRoleNotGranted       = errors.New("auth: role is not granted to the user")
	ErrPermissionNotGranted = errors.New("auth: permission is not granted to the role")
	ErrAuthNotEnabled       = errors.New("auth: authentication is not enabled")
	ErrAuthOldRevision      = errors.New("auth: revision in header is old")
	ErrInvalidAuthToken     = errors.New("auth: invalid auth token")
	ErrInvalidAuthOpts      = errors.New("auth: invalid auth options")
	ErrInvalidAuthMgmt      = errors.New("auth: invalid auth management")
	ErrInvalidAuthMethod    = errors.New("auth: invalid auth signature method")
	ErrMissingKey           = errors.New("auth: missing key data")
	ErrKeyMismatch          = errors.New("auth: public and private keys don't match")
	ErrVerifyOnly           = errors.New("auth: token signing attempted with verify-only key")

	// ErrCorruptState reports persisted auth state that fails strict
	// decoding (see DecodeKV). It is wrapped with the offending key.
	ErrCorruptState = errors.New("auth: corrupt persisted state")
)

var grpcErrors = []struct {
	err, grpc error
}{
	{ErrRootUserNotExist, rpctypes.ErrGRPCRootUserNotExist},
	{ErrRootRoleNotExist, rpctypes.ErrGRPCRootRoleNotExist},
	{ErrUserAlreadyExist, rpctypes.ErrGRPCUserAlreadyExist},
	{ErrUserEmpty, rpctypes.ErrGRPCUserEmpty},
	{ErrUserNotFound, rpctypes.ErrGRPCUserNotFound},
	{ErrRoleAlreadyExist, rpctypes.ErrGRPCRoleAlreadyExist},
	{ErrRoleNotFound, rpctypes.ErrGRPCRoleNotFound},
	{ErrRoleEmpty, rpctypes.ErrGRPCRoleEmpty},
	{ErrAuthFailed, rpctypes.ErrGRPCAuthFailed},
	{ErrPermissionNotGiven, rpctypes.ErrGRPCPermissionNotGiven},
	{ErrPermissionDenied, rpctypes.ErrGRPCPermissionDenied},
	{ErrRoleNotGranted, rpctypes.ErrGRPCRoleNotGranted},
	{ErrPermissionNotGranted, rpctypes.ErrGRPCPermissionNotGranted},
	{ErrAuthNotEnabled, rpctypes.ErrGRPCAuthNotEnabled},
	{ErrInvalidAuthToken, rpctypes.ErrGRPCInvalidAuthToken},
	{ErrInvalidAuthMgmt, rpctypes.ErrGRPCInvalidAuthMgmt},
	{ErrAuthOldRevision, rpctypes.ErrGRPCAuthOldRevision},
}

// GRPCError returns the rpctypes error etcd v3.6 sends for err (see the
// table on the sentinels) and true, or (nil, false) when err is not one of
// the mapped auth errors; the caller then applies its generic conversion
// (etcd: status.Error(codes.Unknown, err.Error())).
func GRPCError(err error) (error, bool) {
	for _, m := range grpcErrors {
		if errors.Is(err, m.err) {
			return m.grpc, true
		}
	}
	return nil, false
}
