package auth

import (
	"context"
	"crypto/rand"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

const (
	simpleTokenLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	// simpleTokenPrefixLen is the number of random letters in a simple
	// token (etcd defaultSimpleTokenLength): 52^16, about 91 bits.
	simpleTokenPrefixLen = 16
)

// tokenSimple implements etcd's "simple" tokens: "<16 random letters>.<raft
// index>", held in memory on every member, expiring SimpleTokenTTL after
// their last use. Unlike etcd, Info also rejects a token past its expiry
// that the sweeper has not dropped yet, so expiry is exact rather than up to
// one sweep interval late.
type tokenSimple struct {
	cfg TokenConfig

	mu struct {
		sync.RWMutex
		enabled bool
		tokens  map[string]*simpleToken
		stopc   chan struct{} // closed to stop the sweeper
		donec   chan struct{} // closed by the sweeper on exit
	}
}

type simpleToken struct {
	username string
	// expiresAt is unix nanoseconds; refreshed under mu.RLock on use.
	expiresAt atomic.Int64
}

func newTokenSimple(cfg TokenConfig) *tokenSimple {
	t := &tokenSimple{cfg: cfg}
	t.mu.tokens = make(map[string]*simpleToken)
	return t
}

func (t *tokenSimple) GenTokenPrefix() (string, error) {
	ret := make([]byte, simpleTokenPrefixLen)
	n := big.NewInt(int64(len(simpleTokenLetters)))
	for i := range ret {
		b, err := rand.Int(rand.Reader, n)
		if err != nil {
			return "", err
		}
		ret[i] = simpleTokenLetters[b.Int64()]
	}
	return string(ret), nil
}

func (t *tokenSimple) Assign(_ context.Context, p TokenParams) (string, error) {
	token := p.Prefix + "." + strconv.FormatUint(p.Index, 10)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.mu.enabled {
		// etcd returns the token but does not record it; it never resolves.
		return token, nil
	}
	if _, ok := t.mu.tokens[token]; ok {
		// Prefix is random and Index unique per entry: a repeat is a bug.
		t.cfg.Logger.Panic("failed to assign already-used simple token to a user",
			zap.String("user-name", p.Username), zap.String("token-fingerprint", redactToken(token)))
	}
	st := &simpleToken{username: p.Username}
	st.expiresAt.Store(t.cfg.Now().Add(t.cfg.SimpleTokenTTL).UnixNano())
	t.mu.tokens[token] = st
	return token, nil
}

func (t *tokenSimple) Info(ctx context.Context, token string, revision uint64) (*AuthInfo, bool) {
	prefix, idx, ok := strings.Cut(token, ".")
	if !ok || strings.Contains(idx, ".") || prefix == "" {
		return nil, false
	}
	index, err := strconv.ParseUint(idx, 10, 64)
	if err != nil {
		return nil, false
	}
	if t.cfg.IndexWaiter != nil {
		select {
		case <-t.cfg.IndexWaiter(index):
		case <-ctx.Done():
			return nil, false
		}
	}
	now := t.cfg.Now()
	t.mu.RLock()
	defer t.mu.RUnlock()
	st, ok := t.mu.tokens[token]
	if !ok || now.UnixNano() > st.expiresAt.Load() {
		return nil, false
	}
	st.expiresAt.Store(now.Add(t.cfg.SimpleTokenTTL).UnixNano())
	return &AuthInfo{Username: st.username, Revision: revision}, true
}

func (t *tokenSimple) InvalidateUser(username string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok, st := range t.mu.tokens {
		if st.username == username {
			delete(t.mu.tokens, tok)
		}
	}
}

func (t *tokenSimple) Enable() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.enabled {
		return
	}
	t.mu.enabled = true
	t.mu.stopc = make(chan struct{})
	t.mu.donec = make(chan struct{})
	go t.sweep(t.mu.stopc, t.mu.donec)
}

func (t *tokenSimple) Disable() {
	t.mu.Lock()
	stopc, donec := t.mu.stopc, t.mu.donec
	t.mu.enabled = false
	t.mu.tokens = make(map[string]*simpleToken) // invalidate all tokens
	t.mu.stopc, t.mu.donec = nil, nil
	t.mu.Unlock()
	if stopc != nil {
		close(stopc)
		<-donec
	}
}

// sweep drops expired tokens every CleanupInterval until stopc closes.
func (t *tokenSimple) sweep(stopc, donec chan struct{}) {
	defer close(donec)
	ticker := time.NewTicker(t.cfg.CleanupInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			t.sweepOnce()
		case <-stopc:
			return
		}
	}
}

func (t *tokenSimple) sweepOnce() {
	now := t.cfg.Now().UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok, st := range t.mu.tokens {
		if now > st.expiresAt.Load() {
			delete(t.mu.tokens, tok)
		}
	}
}

// tokenCount returns the number of live tokens (tests).
func (t *tokenSimple) tokenCount() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.mu.tokens)
}
