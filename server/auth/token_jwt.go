package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
)

// JWT options of --auth-token (etcd server/auth/options.go).
const (
	optSignMethod = "sign-method"
	optPublicKey  = "pub-key"
	optPrivateKey = "priv-key"
	optTTL        = "ttl"
)

var knownJWTOptions = map[string]bool{optSignMethod: true, optPublicKey: true, optPrivateKey: true, optTTL: true}

// tokenJWT implements etcd's "jwt" tokens: claims username, revision and
// exp, signed with the configured key. The revision claim is the auth
// revision at issue, so any later auth change makes requests under the token
// fail with ErrAuthOldRevision and the client re-authenticates. A provider
// configured with a public key only verifies (Assign fails ErrVerifyOnly).
type tokenJWT struct {
	lg         *zap.Logger
	now        func() time.Time
	signMethod jwt.SigningMethod
	key        any
	ttl        time.Duration
	verifyOnly bool
}

func newTokenJWT(cfg TokenConfig, opts map[string]string) (*tokenJWT, error) {
	ttl := DefaultJWTTTL
	if s := opts[optTTL]; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			cfg.Logger.Error("problem loading JWT options", zap.Error(err))
			return nil, ErrInvalidAuthOpts
		}
		ttl = d
	}
	var pub, priv []byte
	var err error
	if f := opts[optPublicKey]; f != "" {
		if pub, err = os.ReadFile(f); err != nil {
			cfg.Logger.Error("problem loading JWT options", zap.Error(err))
			return nil, ErrInvalidAuthOpts
		}
	}
	if f := opts[optPrivateKey]; f != "" {
		if priv, err = os.ReadFile(f); err != nil {
			cfg.Logger.Error("problem loading JWT options", zap.Error(err))
			return nil, ErrInvalidAuthOpts
		}
	}
	method := jwt.GetSigningMethod(opts[optSignMethod])
	if method == nil {
		// etcd: ParseWithDefaults fails ErrInvalidAuthMethod and
		// newTokenProviderJWT turns any parse failure into ErrInvalidAuthOpts.
		cfg.Logger.Error("problem loading JWT options", zap.Error(ErrInvalidAuthMethod))
		return nil, ErrInvalidAuthOpts
	}
	var unknown []string
	for k := range opts {
		if !knownJWTOptions[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		cfg.Logger.Warn("unknown JWT options", zap.Strings("keys", unknown))
	}
	key, err := jwtKey(method, pub, priv)
	if err != nil {
		return nil, err
	}
	t := &tokenJWT{lg: cfg.Logger, now: cfg.Now, signMethod: method, key: key, ttl: ttl}
	switch key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		t.verifyOnly = true
	}
	return t, nil
}

// jwtKey returns the key for method (etcd jwtOptions.Key): the private key
// when given (checked against the public key if both are), else the public
// key; for HMAC the priv-key file's bytes.
func jwtKey(method jwt.SigningMethod, pub, priv []byte) (any, error) {
	switch method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(priv) == 0 {
			return nil, ErrMissingKey
		}
		return priv, nil
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		return pairKey(pub, priv, func(b []byte) (crypto.PublicKey, error) { return jwt.ParseRSAPublicKeyFromPEM(b) },
			func(b []byte) (crypto.PrivateKey, error) { return jwt.ParseRSAPrivateKeyFromPEM(b) })
	case *jwt.SigningMethodECDSA:
		return pairKey(pub, priv, func(b []byte) (crypto.PublicKey, error) { return jwt.ParseECPublicKeyFromPEM(b) },
			func(b []byte) (crypto.PrivateKey, error) { return jwt.ParseECPrivateKeyFromPEM(b) })
	case *jwt.SigningMethodEd25519:
		return pairKey(pub, priv, jwt.ParseEdPublicKeyFromPEM, jwt.ParseEdPrivateKeyFromPEM)
	default:
		return nil, fmt.Errorf("unsupported signing method: %T", method)
	}
}

func pairKey(pubPEM, privPEM []byte,
	parsePub func([]byte) (crypto.PublicKey, error),
	parsePriv func([]byte) (crypto.PrivateKey, error),
) (any, error) {
	var pub crypto.PublicKey
	var priv crypto.PrivateKey
	var err error
	if len(privPEM) > 0 {
		if priv, err = parsePriv(privPEM); err != nil {
			return nil, err
		}
	}
	if len(pubPEM) > 0 {
		if pub, err = parsePub(pubPEM); err != nil {
			return nil, err
		}
	}
	if priv == nil {
		if pub == nil {
			return nil, ErrMissingKey
		}
		return pub, nil
	}
	if pub != nil {
		signer, ok := priv.(crypto.Signer)
		eq, ok2 := pub.(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !ok2 || !eq.Equal(signer.Public()) {
			return nil, ErrKeyMismatch
		}
	}
	return priv, nil
}

func (t *tokenJWT) Enable()                         {}
func (t *tokenJWT) Disable()                        {}
func (t *tokenJWT) InvalidateUser(string)           {}
func (t *tokenJWT) GenTokenPrefix() (string, error) { return "", nil }

func (t *tokenJWT) verifyKey() any {
	switch k := t.key.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	case ed25519.PrivateKey:
		return k.Public()
	default:
		return t.key
	}
}

// Info verifies token's signature, algorithm and expiry; revision is
// ignored (the token carries its own).
func (t *tokenJWT) Info(_ context.Context, token string, _ uint64) (*AuthInfo, bool) {
	parsed, err := jwt.Parse(token, func(tk *jwt.Token) (any, error) {
		if tk.Method.Alg() != t.signMethod.Alg() {
			return nil, errors.New("invalid signing method")
		}
		return t.verifyKey(), nil
	}, jwt.WithTimeFunc(t.now))
	if err != nil {
		t.lg.Warn("failed to parse a JWT token", zap.Error(err))
		return nil, false
	}
	claims, ok := parsed.Claims.(jwt.MapClaims)
	if !parsed.Valid || !ok {
		t.lg.Warn("failed to obtain claims from a JWT token")
		return nil, false
	}
	username, ok := claims["username"].(string)
	if !ok {
		t.lg.Warn("failed to obtain user claims from jwt token")
		return nil, false
	}
	revision, ok := claims["revision"].(float64)
	if !ok {
		t.lg.Warn("failed to obtain revision claims from jwt token")
		return nil, false
	}
	return &AuthInfo{Username: username, Revision: uint64(revision)}, true
}

func (t *tokenJWT) Assign(_ context.Context, p TokenParams) (string, error) {
	if t.verifyOnly {
		return "", ErrVerifyOnly
	}
	tk := jwt.NewWithClaims(t.signMethod, jwt.MapClaims{
		"username": p.Username,
		"revision": p.Revision,
		"exp":      t.now().Add(t.ttl).Unix(),
	})
	token, err := tk.SignedString(t.key)
	if err != nil {
		t.lg.Debug("failed to sign a JWT token", zap.String("user-name", p.Username), zap.Error(err))
		return "", err
	}
	return token, nil
}
