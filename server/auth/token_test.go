package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestSimpleTokenExpiry(t *testing.T) {
	e := newTestEnv(t, "simple")
	e.userAdd("alice", "pw")
	e.enableWithRoot()
	tp := e.s.tp.(*tokenSimple)
	ctx := context.Background()

	token := e.login("alice", 3)
	e.clock.Advance(DefaultSimpleTokenTTL - time.Second)
	if _, err := e.s.AuthInfoFromToken(ctx, token); err != nil {
		t.Fatalf("before TTL: %v", err)
	}
	// The use refreshed the TTL.
	e.clock.Advance(DefaultSimpleTokenTTL - time.Second)
	if _, err := e.s.AuthInfoFromToken(ctx, token); err != nil {
		t.Fatalf("refreshed: %v", err)
	}
	e.clock.Advance(DefaultSimpleTokenTTL + time.Second)
	if _, err := e.s.AuthInfoFromToken(ctx, token); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("after TTL: %v", err)
	}
	// The sweeper drops expired tokens.
	if tp.tokenCount() != 1 {
		t.Fatalf("tokens before sweep: %d", tp.tokenCount())
	}
	tp.sweepOnce()
	if tp.tokenCount() != 0 {
		t.Fatalf("tokens after sweep: %d", tp.tokenCount())
	}
	// Deleting the user invalidates its tokens.
	token = e.login("alice", 4)
	e.ok(e.s.UserDelete(e.be, &pb.AuthUserDeleteRequest{Name: "alice"}))
	if _, err := e.s.AuthInfoFromToken(ctx, token); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("after delete: %v", err)
	}
	for _, bad := range []string{"", "abc", "a.b", "a.1.2", ".1"} {
		if _, ok := tp.Info(ctx, bad, 1); ok {
			t.Errorf("malformed token %q accepted", bad)
		}
	}
}

func TestSimpleTokenIndexWaiter(t *testing.T) {
	applied := make(chan struct{})
	tp, err := NewTokenProvider(TokenConfig{Spec: "simple", IndexWaiter: func(uint64) <-chan struct{} { return applied }})
	if err != nil {
		t.Fatal(err)
	}
	tp.Enable()
	defer tp.Disable()
	tok, _ := tp.Assign(context.Background(), TokenParams{Username: "u", Index: 9, Prefix: "p"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, ok := tp.Info(ctx, tok, 1); ok {
		t.Fatal("resolved before the index was applied")
	}
	close(applied)
	if ai, ok := tp.Info(context.Background(), tok, 5); !ok || ai.Username != "u" || ai.Revision != 5 {
		t.Fatalf("info %+v %v", ai, ok)
	}
}

func TestTokenSpecErrors(t *testing.T) {
	for _, spec := range []string{"bogus", "simple,a", "jwt,a=1,a=2", "jwt,sign-method=XX", "jwt,sign-method=HS256",
		"jwt,sign-method=RS256", "jwt,sign-method=HS256,priv-key=/nonexistent", "jwt,sign-method=HS256,ttl=zz"} {
		if _, err := NewTokenProvider(TokenConfig{Spec: spec}); err == nil {
			t.Errorf("spec %q accepted", spec)
		}
	}
	tp, err := NewTokenProvider(TokenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Assign(context.Background(), TokenParams{}); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("nop assign: %v", err)
	}
}

func writeFile(t *testing.T, name string, b []byte) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func rsaPEM(t *testing.T) (priv, pub string) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return writeFile(t, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})),
		writeFile(t, "pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
}

func ecPEM(t *testing.T) (priv, pub string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalECPrivateKey(k)
	pubDER, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	return writeFile(t, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: privDER})),
		writeFile(t, "pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
}

func TestJWT(t *testing.T) {
	rsaPriv, rsaPub := rsaPEM(t)
	rsaPriv2, rsaPub2 := rsaPEM(t)
	ecPriv, ecPub := ecPEM(t)
	hmac := writeFile(t, "hmac", []byte("0123456789abcdef0123456789abcdef"))
	hmac2 := writeFile(t, "hmac2", []byte("another secret key, not the same"))
	for _, tc := range []struct {
		name, spec, wrongSpec string
	}{
		{"RS256", "jwt,sign-method=RS256,priv-key=" + rsaPriv + ",pub-key=" + rsaPub, "jwt,sign-method=RS256,pub-key=" + rsaPub2},
		{"ES256", "jwt,sign-method=ES256,priv-key=" + ecPriv + ",pub-key=" + ecPub, "jwt,sign-method=RS256,pub-key=" + rsaPub},
		{"HS256", "jwt,sign-method=HS256,priv-key=" + hmac + ",ttl=1m", "jwt,sign-method=HS256,priv-key=" + hmac2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			tp, err := NewTokenProvider(TokenConfig{Spec: tc.spec, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			tok, err := tp.Assign(ctx, TokenParams{Username: "alice", Revision: 42})
			if err != nil {
				t.Fatal(err)
			}
			ai, ok := tp.Info(ctx, tok, 7)
			if !ok || ai.Username != "alice" || ai.Revision != 42 {
				t.Fatalf("info %+v %v", ai, ok)
			}
			wrong, err := NewTokenProvider(TokenConfig{Spec: tc.wrongSpec, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := wrong.Info(ctx, tok, 7); ok {
				t.Fatal("token verified with the wrong key")
			}
			if _, ok := tp.Info(ctx, tok[:len(tok)-2]+"xx", 7); ok {
				t.Fatal("tampered token verified")
			}
			clock.Advance(DefaultJWTTTL + time.Minute)
			if _, ok := tp.Info(ctx, tok, 7); ok {
				t.Fatal("expired token verified")
			}
		})
	}
	// Public key only: verify-only.
	tp, err := NewTokenProvider(TokenConfig{Spec: "jwt,sign-method=RS256,pub-key=" + rsaPub})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Assign(context.Background(), TokenParams{Username: "a"}); !errors.Is(err, ErrVerifyOnly) {
		t.Fatalf("verify-only assign: %v", err)
	}
	if _, err := NewTokenProvider(TokenConfig{Spec: "jwt,sign-method=RS256,priv-key=" + rsaPriv + ",pub-key=" + rsaPub2}); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("mismatched keys: %v", err)
	}
	_ = rsaPriv2
}

// TestJWTOldRevision: a JWT carries the revision it was issued at, so any
// later auth change fails requests under it with ErrAuthOldRevision.
func TestJWTOldRevision(t *testing.T) {
	hmac := writeFile(t, "hmac", []byte("0123456789abcdef0123456789abcdef"))
	e := newTestEnv(t, "jwt,sign-method=HS256,priv-key="+hmac)
	e.userAdd("alice", "pw")
	e.roleAdd("r")
	e.grantRole("alice", "r")
	e.grantPerm("r", 2, "k", "")
	e.enableWithRoot()
	tok := e.login("alice", 0)
	ai, err := e.s.AuthInfoFromToken(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.IsPutPermitted(ai, []byte("k")); err != nil {
		t.Fatal(err)
	}
	e.roleAdd("unrelated")
	if err := e.s.IsPutPermitted(ai, []byte("k")); !errors.Is(err, ErrAuthOldRevision) {
		t.Fatalf("after change: %v", err)
	}
}
