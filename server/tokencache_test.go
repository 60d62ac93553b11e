package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/careplan/careplan/auth"
)

type countingVerifier struct {
	calls int
	err   error
}

func (v *countingVerifier) Verify(context.Context, string) (*auth.Principal, error) {
	v.calls++
	if v.err != nil {
		return nil, v.err
	}
	return &auth.Principal{Subject: "s"}, nil
}

func mint(t *testing.T, s *auth.Signer, exp time.Time) string {
	t.Helper()
	tok, err := s.Mint(auth.Claims{Issuer: "i", Subject: "s", Org: "RXA", OrgType: "nhs", ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTokenCache(t *testing.T) {
	signer, _ := auth.NewSigner("k")
	now := time.Now()
	clock := now
	next := &countingVerifier{}
	c := newTokenCache(next, 2, 5*time.Minute)
	c.now = func() time.Time { return clock }
	long := mint(t, signer, now.Add(time.Hour))
	short := mint(t, signer, now.Add(time.Minute))

	for range 3 {
		if _, err := c.Verify(context.Background(), long); err != nil {
			t.Fatal(err)
		}
	}
	if next.calls != 1 {
		t.Fatalf("verifier called %d times for one token, want 1", next.calls)
	}
	_, _ = c.Verify(context.Background(), short)
	clock = now.Add(2 * time.Minute) // past short's exp, within maxAge
	_, _ = c.Verify(context.Background(), short)
	if next.calls != 3 {
		t.Fatalf("an expired token was served from the cache (calls %d)", next.calls)
	}
	clock = now.Add(6 * time.Minute) // past maxAge for long
	_, _ = c.Verify(context.Background(), long)
	if next.calls != 4 {
		t.Fatalf("an entry outlived maxAge (calls %d)", next.calls)
	}
	// Failures are never cached.
	bad := &countingVerifier{err: errors.New("bad")}
	cb := newTokenCache(bad, 10, time.Minute)
	for range 2 {
		if _, err := cb.Verify(context.Background(), long); err == nil {
			t.Fatal("a failure was cached as a success")
		}
	}
	if bad.calls != 2 {
		t.Fatalf("failures were cached (calls %d)", bad.calls)
	}
	// Bounded: never more than max entries.
	for i := range 10 {
		_, _ = c.Verify(context.Background(), mint(t, signer, now.Add(time.Duration(i+10)*time.Hour)))
		if len(c.entries) > 2 {
			t.Fatalf("cache grew to %d entries, bound 2", len(c.entries))
		}
	}
}

// versionedVerifier is a countingVerifier whose keys can change.
type versionedVerifier struct {
	countingVerifier
	version uint64
}

func (v *versionedVerifier) KeysVersion() uint64 { return v.version }

// TestTokenCacheDropsEntriesOnKeyChange: once the verifier's keys change,
// a cached token is checked again, and its rejection stands.
func TestTokenCacheDropsEntriesOnKeyChange(t *testing.T) {
	signer, _ := auth.NewSigner("k")
	next := &versionedVerifier{}
	c := newTokenCache(next, 10, time.Hour)
	tok := mint(t, signer, time.Now().Add(time.Hour))
	for range 2 {
		if _, err := c.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if next.calls != 1 {
		t.Fatalf("verifier called %d times before the keys changed, want 1", next.calls)
	}
	next.version++
	next.err = errors.New("unknown signing key")
	if _, err := c.Verify(context.Background(), tok); err == nil {
		t.Fatal("a token cached under the old keys was accepted after they changed")
	}
	next.err = nil
	for range 2 {
		if _, err := c.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if next.calls != 3 {
		t.Fatalf("verifier called %d times in all, want 3 (the entry is cached again under the new keys)", next.calls)
	}
}
