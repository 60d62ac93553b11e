package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/careplan/careplan/auth"
)

// tokenCache remembers verified tokens, so a caller that sends the same
// token on every call pays for one signature check, not one per call. An
// entry lives until the token expires, and never longer than maxAge, so a
// key removed from the JWKS or a changed trust configuration takes effect
// within maxAge. Only successes are cached. The cache is bounded: when it is
// full it drops expired entries, and if still full, everything.
type tokenCache struct {
	next   TokenVerifier
	max    int
	maxAge time.Duration
	now    func() time.Time

	mu      sync.RWMutex
	entries map[[32]byte]cachedPrincipal
}

type cachedPrincipal struct {
	p     *auth.Principal
	until time.Time
}

func newTokenCache(next TokenVerifier, max int, maxAge time.Duration) *tokenCache {
	return &tokenCache{next: next, max: max, maxAge: maxAge, now: time.Now, entries: make(map[[32]byte]cachedPrincipal)}
}

// Verify implements TokenVerifier.
func (c *tokenCache) Verify(ctx context.Context, token string) (*auth.Principal, error) {
	key := sha256.Sum256([]byte(token))
	now := c.now()
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if ok && now.Before(e.until) {
		return e.p, nil
	}
	p, err := c.next.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	until := now.Add(c.maxAge)
	if exp, ok := expiry(token); ok && exp.Before(until) {
		until = exp
	}
	c.mu.Lock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[key] = cachedPrincipal{p: p, until: until}
	c.mu.Unlock()
	return p, nil
}

// expiry reads exp from a token the verifier has already accepted.
func expiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}, false
	}
	secs, err := claims.Exp.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(secs), 0), true
}
