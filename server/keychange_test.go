package server_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/server"
)

// TestWithdrawnKeyStopsAtNextRefresh: the issuer drops a signing key from
// its JWKS. Once the server has refetched the set, a token signed by that
// key is refused at once, though the token cache had accepted it (the
// cache's five-minute age limit is not what ends it).
func TestWithdrawnKeyStopsAtNextRefresh(t *testing.T) {
	old, next := newSigner(t, "old"), newSigner(t, "next")
	var mu sync.Mutex
	served := jwksOf(t, old, next)
	jwks := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Write(served)
	}))
	t.Cleanup(jwks.Close)
	v, err := auth.NewVerifier(auth.Config{Issuers: []auth.IssuerConfig{{
		Issuer: testIssuer, Audience: testAudience, JWKSURL: jwks.URL, HTTPClient: jwks.Client(),
		RefreshInterval: 20 * time.Millisecond,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	e := newEnv(t, func(c *server.Config) { c.Verifier = v })
	tok := func(s *auth.Signer) string {
		now := time.Now()
		tok, err := s.Mint(auth.Claims{
			Issuer: testIssuer, Audience: []string{testAudience}, Subject: trustUser.Subject, Org: trustUser.Org,
			OrgType: trustUser.OrgType, Roles: rw, IssuedAt: now, ExpiresAt: now.Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	withdrawn := tok(old)
	get := func(tok string) error {
		_, err := e.plans.GetCarePlan(withToken(tok), &careplanv1.GetCarePlanRequest{NhsNumber: fixture.NHSNumber(1)})
		return err
	}
	for range 2 { // the second is served from the token cache
		wantCode(t, get(withdrawn), codes.NotFound)
	}

	before := v.KeysVersion()
	mu.Lock()
	served = jwksOf(t, next)
	mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for v.KeysVersion() == before {
		if time.Now().After(deadline) {
			t.Fatal("the server did not refetch the JWKS within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantCode(t, get(withdrawn), codes.Unauthenticated)
	wantCode(t, get(tok(next)), codes.NotFound)
}

func newSigner(t *testing.T, kid string) *auth.Signer {
	t.Helper()
	s, err := auth.NewSigner(kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwksOf is one JWK Set holding the signers' public keys.
func jwksOf(t *testing.T, signers ...*auth.Signer) []byte {
	t.Helper()
	b, err := auth.JoinJWKS(signers...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
