package auth_test

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/careplan/careplan/auth"
)

func TestLoadOrCreateSigner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	path := filepath.Join(dir, "dev-signing.pem")

	first, err := auth.LoadOrCreateSigner(path)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		info, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %o, want %o", p, got, want)
		}
	}

	second, err := auth.LoadOrCreateSigner(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if first.KID() == "" || second.KID() != first.KID() {
		t.Fatalf("kid after reload = %q, want %q", second.KID(), first.KID())
	}

	jwks, err := second.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Issuers: []auth.IssuerConfig{{Issuer: issA, Audience: audience, JWKS: jwks}}})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	c := validClaims()
	c.IssuedAt, c.ExpiresAt = time.Now(), time.Now().Add(time.Minute)
	tok, err := first.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("token from first signer rejected by second's JWKS: %v", err)
	}
}

func TestLoadOrCreateSignerRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadOrCreateSigner(path); err == nil {
		t.Fatal("LoadOrCreateSigner accepted a garbage key file")
	}
	if data, _ := os.ReadFile(path); string(data) != "not a key" {
		t.Error("LoadOrCreateSigner overwrote an existing file")
	}
}

// TestThumbprint checks the kid derivation against RFC 7638 section 3.1.
func TestThumbprint(t *testing.T) {
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	if err != nil {
		t.Fatal(err)
	}
	got, err := auth.Thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; err != nil || got != want {
		t.Errorf("thumbprint = %q, %v; want %q", got, err, want)
	}
}

func TestSignerJWKS(t *testing.T) {
	tests := []struct {
		name      string
		newSigner func(string) (*auth.Signer, error)
		kty, alg  string
	}{
		{name: "ES256", newSigner: auth.NewSigner, kty: "EC", alg: "ES256"},
		{name: "RS256", newSigner: auth.NewRSASigner, kty: "RSA", alg: "RS256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := mustSigner(t, tc.newSigner, "k1").JWKS()
			if err != nil {
				t.Fatal(err)
			}
			var set struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(raw, &set); err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != 1 {
				t.Fatalf("JWKS has %d keys, want 1", len(set.Keys))
			}
			k := set.Keys[0]
			if k["kid"] != "k1" || k["alg"] != tc.alg || k["use"] != "sig" || k["kty"] != tc.kty {
				t.Errorf("JWK = %v, want kid k1, alg %s, use sig, kty %s", k, tc.alg, tc.kty)
			}
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := k[private]; ok {
					t.Errorf("public JWKS has private member %q", private)
				}
			}
		})
	}
}

func TestNewSignerNeedsKID(t *testing.T) {
	if _, err := auth.NewSigner(""); err == nil {
		t.Error("NewSigner accepted an empty kid")
	}
}
