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
// entry lives until the token expires, and never longer than maxAge. When
// the verifier's keys change (a JWKS refresh drops a key), every entry from
// before is dropped, so a withdrawn key stops working at once; maxAge bounds
// what no key version reports. Only successes are cached. The cache is
// bounded: when it is full it drops expired entries, and if still full,
// everything.
type tokenCache struct {
	next   TokenVerifier
	keys   keysVersioner // next, if its keys can change; else nil
	max    int
	maxAge time.Duration
	now    func() time.Time

	mu      sync.RWMutex
	entries map[[32]byte]cachedPrincipal
}

// keysVersioner is a TokenVerifier whose keys can change, as
// auth.Verifier's fetched JWKS can.
type keysVersioner interface{ KeysVersion() uint64 }

type cachedPrincipal struct {
	p     *auth.Principal
	until time.Time
	keys  uint64 // the verifier's KeysVersion when p was verified
}

func newTokenCache(next TokenVerifier, max int, maxAge time.Duration) *tokenCache {
	keys, _ := next.(keysVersioner)
	return &tokenCache{next: next, keys: keys, max: max, maxAge: maxAge, now: time.Now, entries: make(map[[32]byte]cachedPrincipal)}
}

func (c *tokenCache) keysVersion() uint64 {
	if c.keys == nil {
		return 0
	}
	return c.keys.KeysVersion()
}

// Verify implements TokenVerifier.
func (c *tokenCache) Verify(ctx context.Context, token string) (*auth.Principal, error) {
	key := sha256.Sum256([]byte(token))
	now := c.now()
	// Read before verifying: if the keys change meanwhile, the entry
	// carries the older version and is checked again next time.
	keys := c.keysVersion()
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if ok && now.Before(e.until) && e.keys == keys {
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
	c.entries[key] = cachedPrincipal{p: p, until: until, keys: keys}
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
