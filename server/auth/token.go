package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"go.uber.org/zap"
)

// TokenProvider issues and resolves the tokens returned by Authenticate.
// Implementations are safe for concurrent use.
type TokenProvider interface {
	// Info resolves token. revision is the store's current auth revision;
	// providers whose tokens do not carry one (simple) report it.
	Info(ctx context.Context, token string, revision uint64) (*AuthInfo, bool)
	// Assign issues a token for p.Username. It is called on the apply path
	// of every member, so simple tokens exist on every member.
	Assign(ctx context.Context, p TokenParams) (string, error)
	// Enable and Disable follow the auth enabled flag; Disable drops every
	// token the provider holds.
	Enable()
	Disable()
	// InvalidateUser drops the tokens of a deleted user or of one whose
	// password changed.
	InvalidateUser(username string)
	// GenTokenPrefix returns the random part of a simple token, generated
	// by the proposer before raft ("" for other providers).
	GenTokenPrefix() (string, error)
}

// TokenParams are the inputs of TokenProvider.Assign.
type TokenParams struct {
	Username string
	Revision uint64 // auth revision at authentication
	// Index and Prefix are used by simple tokens only: the raft index of
	// the Authenticate entry and the proposer's GenTokenPrefix, which make
	// the token "<Prefix>.<Index>" identical on every member.
	Index  uint64
	Prefix string
}

const (
	tokenTypeSimple = "simple"
	tokenTypeJWT    = "jwt"

	// DefaultSimpleTokenTTL is etcd's --auth-token-ttl default.
	DefaultSimpleTokenTTL = 300 * time.Second
	// DefaultSimpleTokenCleanupInterval is how often expired simple tokens
	// are dropped (etcd's simpleTokenTTLResolution).
	DefaultSimpleTokenCleanupInterval = time.Second
	// DefaultJWTTTL is the JWT ttl when the spec gives none (etcd DefaultTTL).
	DefaultJWTTTL = 5 * time.Minute
)

// TokenConfig configures NewTokenProvider.
type TokenConfig struct {
	// Spec is the --auth-token value: "simple", or
	// "jwt,pub-key=<file>,priv-key=<file>,sign-method=<alg>[,ttl=<dur>]".
	// "" selects the no-op provider (Authenticate fails), as in etcd; the
	// command line default is "simple".
	Spec string
	// SimpleTokenTTL is --auth-token-ttl; a simple token expires this long
	// after its last use. Default DefaultSimpleTokenTTL.
	SimpleTokenTTL time.Duration
	// CleanupInterval is how often expired simple tokens are swept.
	// Default DefaultSimpleTokenCleanupInterval.
	CleanupInterval time.Duration
	// IndexWaiter, if set, returns a channel closed once the raft index is
	// applied locally; simple-token lookups wait on it so a token is valid
	// on a member as soon as it has applied the Authenticate entry. Nil: no
	// wait.
	IndexWaiter func(index uint64) <-chan struct{}
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger. Default zap.NewNop().
	Logger *zap.Logger
}

func (c *TokenConfig) fillDefaults() {
	if c.SimpleTokenTTL <= 0 {
		c.SimpleTokenTTL = DefaultSimpleTokenTTL
	}
	if c.CleanupInterval <= 0 {
		c.CleanupInterval = DefaultSimpleTokenCleanupInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// NewTokenProvider parses cfg.Spec like etcd's --auth-token. Errors:
// ErrInvalidAuthOpts (malformed spec, unknown type, bad jwt options),
// ErrInvalidAuthMethod, ErrMissingKey, ErrKeyMismatch, or a key file or PEM
// parse error.
func NewTokenProvider(cfg TokenConfig) (TokenProvider, error) {
	cfg.fillDefaults()
	tokenType, opts, err := decomposeOpts(cfg.Spec)
	if err != nil {
		cfg.Logger.Error("invalid token option")
		return nil, err
	}
	switch tokenType {
	case tokenTypeSimple:
		cfg.Logger.Warn("simple token is not cryptographically signed")
		return newTokenSimple(cfg), nil
	case tokenTypeJWT:
		return newTokenJWT(cfg, opts)
	case "":
		return tokenNop{}, nil
	default:
		cfg.Logger.Warn("unknown token type", zap.String("type", tokenType))
		return nil, ErrInvalidAuthOpts
	}
}

// decomposeOpts splits "type,k1=v1,k2=v2" (etcd decomposeOpts): every option
// must be exactly one "k=v" and no key may repeat.
func decomposeOpts(spec string) (string, map[string]string, error) {
	parts := strings.Split(spec, ",")
	opts := make(map[string]string)
	for _, p := range parts[1:] {
		kv := strings.Split(p, "=")
		if len(kv) != 2 {
			return "", nil, ErrInvalidAuthOpts
		}
		if _, dup := opts[kv[0]]; dup {
			return "", nil, ErrInvalidAuthOpts
		}
		opts[kv[0]] = kv[1]
	}
	return parts[0], opts, nil
}

// tokenNop is the provider for an empty --auth-token: no token is ever
// valid and Authenticate fails with ErrAuthFailed.
type tokenNop struct{}

func (tokenNop) Info(context.Context, string, uint64) (*AuthInfo, bool) { return nil, false }
func (tokenNop) Assign(context.Context, TokenParams) (string, error)    { return "", ErrAuthFailed }
func (tokenNop) Enable()                                                {}
func (tokenNop) Disable()                                               {}
func (tokenNop) InvalidateUser(string)                                  {}
func (tokenNop) GenTokenPrefix() (string, error)                        { return "", nil }

// redactToken returns a fingerprint of token safe to log.
func redactToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:12]
}
