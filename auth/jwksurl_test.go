package auth_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/careplan/careplan/auth"
)

// jwksServer is an issuer's JWKS endpoint over https on loopback. It counts
// the fetches, and its JWK Set and status can change between fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	jwks    []byte
	status  int
	fetches int
}

func newJWKSServer(t *testing.T, jwks []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{jwks: jwks, status: http.StatusOK}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.fetches++
		w.WriteHeader(s.status)
		if s.status == http.StatusOK {
			w.Write(s.jwks)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// set changes what later fetches get; nil jwks keeps the current set.
func (s *jwksServer) set(status int, jwks []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
	if jwks != nil {
		s.jwks = jwks
	}
}

func (s *jwksServer) fetchCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// urlIssuer is issuer A with its keys at srv, trusting srv's certificate.
func urlIssuer(srv *jwksServer) auth.IssuerConfig {
	return auth.IssuerConfig{Issuer: issA, Audience: audience, JWKSURL: srv.URL + "/jwks.json", HTTPClient: srv.Client()}
}

// newURLVerifier trusts issuer A at srv, edited by edit, and logs to log.
func newURLVerifier(t *testing.T, srv *jwksServer, log *bytes.Buffer, edit func(*auth.IssuerConfig)) *auth.Verifier {
	t.Helper()
	ic := urlIssuer(srv)
	if edit != nil {
		edit(&ic)
	}
	v, err := auth.NewVerifier(auth.Config{
		Issuers: []auth.IssuerConfig{ic},
		Now:     func() time.Time { return now },
		Logger:  slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// keyStep is one step in the life of a JWKS endpoint: what it serves from
// now on, a token to verify, and the fetches there must have been by then.
type keyStep struct {
	name string
	// status and jwks are what the endpoint serves from this step on; a
	// zero status keeps it as it is, and nil jwks keeps the current set.
	status      int
	jwks        []byte
	token       *auth.Signer
	wantErr     string
	wantFetches int
}

// runKeySteps runs steps in order; each depends on the ones before.
func runKeySteps(t *testing.T, v *auth.Verifier, srv *jwksServer, steps []keyStep) {
	t.Helper()
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.status != 0 {
				srv.set(st.status, st.jwks)
			}
			_, err := v.Verify(context.Background(), mint(t, st.token, nil))
			switch {
			case st.wantErr == "" && err != nil:
				t.Errorf("Verify: %v", err)
			case st.wantErr != "" && (!errors.Is(err, auth.ErrInvalidToken) || !strings.HasSuffix(err.Error(), ": "+st.wantErr)):
				t.Errorf("Verify error = %v, want reason %q", err, st.wantErr)
			}
			if got := srv.fetchCount(); got != st.wantFetches {
				t.Errorf("JWKS fetched %d times in all, want %d", got, st.wantFetches)
			}
		})
		if !ok {
			t.FailNow() // later steps assume this one's state
		}
	}
}

func TestJWKSURLKeyRotation(t *testing.T) {
	k1, k2, k3 := mustSigner(t, auth.NewSigner, "k1"), mustSigner(t, auth.NewRSASigner, "k2"), mustSigner(t, auth.NewSigner, "k3")
	srv := newJWKSServer(t, mergeJWKS(t, k1))
	// Default intervals: refresh hourly, and on an unknown kid once a minute.
	v := newURLVerifier(t, srv, new(bytes.Buffer), nil)
	runKeySteps(t, v, srv, []keyStep{
		{name: "key from the first fetch verifies from the cache", token: k1, wantFetches: 1},
		{
			name:   "token signed by a new key with an unknown kid triggers one refresh",
			status: http.StatusOK, jwks: mergeJWKS(t, k1, k2),
			token: k2, wantFetches: 2,
		},
		{name: "new key then verifies from the cache", token: k2, wantFetches: 2},
		{
			name:   "second unknown kid within MinRefreshInterval does not refetch",
			status: http.StatusOK, jwks: mergeJWKS(t, k1, k2, k3),
			token: k3, wantErr: "unknown signing key", wantFetches: 2,
		},
		{name: "older key still verifies", token: k1, wantFetches: 2},
	})
}

func TestJWKSURLFailureKeepsLastGoodKeys(t *testing.T) {
	k1, k2 := mustSigner(t, auth.NewSigner, "k1"), mustSigner(t, auth.NewSigner, "k2")
	srv := newJWKSServer(t, mergeJWKS(t, k1))
	var log bytes.Buffer
	// Every unknown kid refetches, so each step below reaches the endpoint.
	v := newURLVerifier(t, srv, &log, func(ic *auth.IssuerConfig) { ic.MinRefreshInterval = time.Nanosecond })
	symmetricOnly := []byte(`{"keys":[{"kty":"oct","kid":"k2","alg":"HS256","k":"c2VjcmV0"}]}`)
	runKeySteps(t, v, srv, []keyStep{
		{
			name:   "endpoint failing: the refresh an unknown kid triggers gets 500",
			status: http.StatusInternalServerError, jwks: mergeJWKS(t, k2),
			token: k2, wantErr: "unknown signing key", wantFetches: 2,
		},
		{name: "last good key still verifies while the endpoint fails", token: k1, wantFetches: 2},
		{
			name:   "endpoint serving no usable key: refused, and the last good keys kept",
			status: http.StatusOK, jwks: symmetricOnly,
			token: k2, wantErr: "unknown signing key", wantFetches: 3,
		},
		{name: "last good key still verifies after the useless set", token: k1, wantFetches: 3},
		{
			name:   "endpoint recovers with a rotated set",
			status: http.StatusOK, jwks: mergeJWKS(t, k2),
			token: k2, wantFetches: 4,
		},
		{name: "key dropped from the set no longer verifies", token: k1, wantErr: "unknown signing key", wantFetches: 5},
	})
	for _, want := range []string{"JWKS refresh failed", issA, "500"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log %q does not mention %q", log.String(), want)
		}
	}
}

func TestJWKSURLBackgroundRefresh(t *testing.T) {
	k1, k2 := mustSigner(t, auth.NewSigner, "k1"), mustSigner(t, auth.NewSigner, "k2")
	srv := newJWKSServer(t, mergeJWKS(t, k1))
	v := newURLVerifier(t, srv, new(bytes.Buffer), func(ic *auth.IssuerConfig) {
		ic.RefreshInterval = 10 * time.Millisecond
		ic.MinRefreshInterval = time.Hour
	})
	verify := func(s *auth.Signer) error {
		_, err := v.Verify(context.Background(), mint(t, s, nil))
		return err
	}

	srv.set(http.StatusInternalServerError, nil)
	// Two failed fetches mean at least one failed refresh has completed.
	waitFor(t, "two background fetches", func() bool { return srv.fetchCount() >= 3 })
	if err := verify(k1); err != nil {
		t.Fatalf("last good key rejected while the endpoint fails: %v", err)
	}

	srv.set(http.StatusOK, mergeJWKS(t, k2))
	waitFor(t, "the dropped key to be rejected", func() bool { return verify(k1) != nil })
	if err := verify(k2); err != nil {
		t.Fatalf("rotated key rejected: %v", err)
	}

	v.Close()
	time.Sleep(20 * time.Millisecond) // let a fetch already under way finish
	before := srv.fetchCount()
	time.Sleep(50 * time.Millisecond)
	if got := srv.fetchCount(); got != before {
		t.Errorf("JWKS fetched %d more times after Close", got-before)
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestJWKSURLKeysVersion: a refresh that brings the same keys, in any
// order, leaves KeysVersion alone, so the server's token cache keeps its entries; one
// that drops a key changes it.
func TestJWKSURLKeysVersion(t *testing.T) {
	k1, k2 := mustSigner(t, auth.NewSigner, "k1"), mustSigner(t, auth.NewSigner, "k2")
	srv := newJWKSServer(t, mergeJWKS(t, k1, k2))
	v := newURLVerifier(t, srv, new(bytes.Buffer), func(ic *auth.IssuerConfig) {
		ic.RefreshInterval = 10 * time.Millisecond
		ic.MinRefreshInterval = time.Hour
	})
	start := v.KeysVersion()
	srv.set(http.StatusOK, mergeJWKS(t, k2, k1))
	n := srv.fetchCount()
	waitFor(t, "three more fetches", func() bool { return srv.fetchCount() >= n+3 })
	if got := v.KeysVersion(); got != start {
		t.Fatalf("KeysVersion went from %d to %d on refreshes of the same keys", start, got)
	}
	srv.set(http.StatusOK, mergeJWKS(t, k2))
	waitFor(t, "KeysVersion to change after k1 was dropped", func() bool { return v.KeysVersion() != start })
	if _, err := v.Verify(context.Background(), mint(t, k1, nil)); err == nil {
		t.Fatal("a token signed by the dropped key verified")
	}
}
