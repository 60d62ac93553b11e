package auth_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

const (
	issA     = "https://idp-a.example.nhs.uk"
	issB     = "https://idp-b.example.gov.uk"
	audience = "careplan"
)

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is two trusted issuers: A signs with an ES256 and an RS256 key,
// B with its own ES256 key.
type fixture struct {
	aES, aRS, b *auth.Signer
	v           *auth.Verifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		aES: mustSigner(t, auth.NewSigner, "a-es"),
		aRS: mustSigner(t, auth.NewRSASigner, "a-rs"),
		b:   mustSigner(t, auth.NewSigner, "b-es"),
	}
	v, err := auth.NewVerifier(auth.Config{
		Issuers: []auth.IssuerConfig{
			{Issuer: issA, Audience: audience, JWKS: mergeJWKS(t, f.aES, f.aRS)},
			{Issuer: issB, Audience: audience, JWKS: mergeJWKS(t, f.b)},
		},
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	f.v = v
	return f
}

func mustSigner(t *testing.T, newSigner func(string) (*auth.Signer, error), kid string) *auth.Signer {
	t.Helper()
	s, err := newSigner(kid)
	if err != nil {
		t.Fatalf("new signer %q: %v", kid, err)
	}
	return s
}

// mergeJWKS joins the signers' public keys into one JWK Set.
func mergeJWKS(t *testing.T, signers ...*auth.Signer) []byte {
	t.Helper()
	out, err := auth.JoinJWKS(signers...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// validClaims is a token issuer A would issue now; cases change one thing.
func validClaims() auth.Claims {
	return auth.Claims{
		Issuer:    issA,
		Subject:   "user-1",
		Org:       "RX1",
		OrgType:   "nhs",
		Audience:  []string{audience},
		Roles:     []string{auth.RoleRead, auth.RoleWrite},
		IssuedAt:  now,
		ExpiresAt: now.Add(5 * time.Minute),
	}
}

func mint(t *testing.T, s *auth.Signer, edit func(*auth.Claims)) string {
	t.Helper()
	c := validClaims()
	if edit != nil {
		edit(&c)
	}
	tok, err := s.Mint(c)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

// resign keeps a token's payload but replaces its header and signature, to
// forge tokens that Signer will not make.
func resign(t *testing.T, token string, header map[string]any, method jwt.SigningMethod, key any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + strings.Split(token, ".")[1]
	sig, err := method.Sign(input, key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// tamper rewrites one payload claim and keeps the original signature.
func tamper(t *testing.T, token, claim string, value any) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload := map[string]any{}
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	payload[claim] = value
	if raw, err = json.Marshal(payload); err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

func publicKeyPEM(t *testing.T, s *auth.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(auth.SignerKey(s).Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	nhsPrincipal := &auth.Principal{
		Subject: "user-1",
		Org:     "RX1",
		OrgType: careplanv1.Organisation_TYPE_NHS,
		Roles:   []string{auth.RoleRead, auth.RoleWrite},
		Issuer:  issA,
	}
	with := func(edit func(*auth.Principal)) *auth.Principal {
		p := *nhsPrincipal
		edit(&p)
		return &p
	}
	hs256 := func(secret []byte) func(*testing.T) string {
		return func(t *testing.T) string {
			return resign(t, mint(t, f.aES, nil), map[string]any{"alg": "HS256", "typ": "JWT", "kid": "a-es"},
				jwt.SigningMethodHS256, secret)
		}
	}

	tests := []struct {
		name  string
		token func(t *testing.T) string
		// wantErr is the reason the error must give; empty means the token is accepted.
		wantErr string
		want    *auth.Principal
	}{
		{
			name:  "valid ES256",
			token: func(t *testing.T) string { return mint(t, f.aES, nil) },
			want:  nhsPrincipal,
		},
		{
			name:  "valid RS256",
			token: func(t *testing.T) string { return mint(t, f.aRS, nil) },
			want:  nhsPrincipal,
		},
		{
			name: "valid from second issuer, council, several audiences",
			token: func(t *testing.T) string {
				return mint(t, f.b, func(c *auth.Claims) {
					c.Issuer, c.OrgType, c.Org = issB, "council", "E09000033"
					c.Audience = []string{"other-service", audience}
				})
			},
			want: with(func(p *auth.Principal) {
				p.Issuer, p.OrgType, p.Org = issB, careplanv1.Organisation_TYPE_COUNCIL, "E09000033"
			}),
		},
		{
			name: "alg none",
			token: func(t *testing.T) string {
				return resign(t, mint(t, f.aES, nil), map[string]any{"alg": "none", "typ": "JWT", "kid": "a-es"},
					jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)
			},
			wantErr: "unsupported alg",
		},
		{
			name: "HS256 keyed with the JWKS JSON",
			token: func(t *testing.T) string {
				return hs256(mergeJWKS(t, f.aES, f.aRS))(t)
			},
			wantErr: "unsupported alg",
		},
		{
			name:    "HS256 keyed with the public key PEM",
			token:   func(t *testing.T) string { return hs256(publicKeyPEM(t, f.aES))(t) },
			wantErr: "unsupported alg",
		},
		{
			name: "HS256 keyed with the signer's own JWKS text",
			token: func(t *testing.T) string {
				jwks, err := f.aES.JWKS()
				if err != nil {
					t.Fatal(err)
				}
				return hs256(jwks)(t)
			},
			wantErr: "unsupported alg",
		},
		{
			name: "unknown kid",
			token: func(t *testing.T) string {
				return mint(t, mustSigner(t, auth.NewSigner, "stranger"), nil)
			},
			wantErr: "unknown signing key",
		},
		{
			name: "missing kid",
			token: func(t *testing.T) string {
				return resign(t, mint(t, f.aES, nil), map[string]any{"alg": "ES256", "typ": "JWT"},
					jwt.SigningMethodES256, auth.SignerKey(f.aES))
			},
			wantErr: "missing kid",
		},
		{
			name: "key not in the JWKS but same kid",
			token: func(t *testing.T) string {
				return mint(t, mustSigner(t, auth.NewSigner, "a-es"), nil)
			},
			wantErr: "bad signature",
		},
		{
			name: "kid of an RS256 key on an ES256 token",
			token: func(t *testing.T) string {
				return resign(t, mint(t, f.aES, nil), map[string]any{"alg": "ES256", "typ": "JWT", "kid": "a-rs"},
					jwt.SigningMethodES256, auth.SignerKey(f.aES))
			},
			wantErr: "signing key does not match alg",
		},
		{
			name:    "tampered payload",
			token:   func(t *testing.T) string { return tamper(t, mint(t, f.aES, nil), "org", "EVIL1") },
			wantErr: "bad signature",
		},
		{
			name:    "not a JWT",
			token:   func(*testing.T) string { return "not-a-token" },
			wantErr: "malformed token",
		},
		{
			name: "expired beyond leeway",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.ExpiresAt = now.Add(-61 * time.Second) })
			},
			wantErr: "token expired",
		},
		{
			name: "expired within leeway",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.ExpiresAt = now.Add(-59 * time.Second) })
			},
			want: nhsPrincipal,
		},
		{
			name: "nbf in the future beyond leeway",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.NotBefore = now.Add(61 * time.Second) })
			},
			wantErr: "token not yet valid",
		},
		{
			name: "nbf in the future within leeway",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.NotBefore = now.Add(59 * time.Second) })
			},
			want: nhsPrincipal,
		},
		{
			name: "missing exp",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.ExpiresAt = time.Time{} })
			},
			wantErr: "missing exp",
		},
		{
			name: "wrong iss",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.Issuer = "https://evil.example" })
			},
			wantErr: "unknown issuer",
		},
		{
			name: "wrong aud",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.Audience = []string{"other-service"} })
			},
			wantErr: "wrong audience",
		},
		{
			name: "missing aud",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.Audience = nil })
			},
			wantErr: "wrong audience",
		},
		{
			name:    "missing sub",
			token:   func(t *testing.T) string { return mint(t, f.aES, func(c *auth.Claims) { c.Subject = "" }) },
			wantErr: "missing sub",
		},
		{
			name:    "missing org",
			token:   func(t *testing.T) string { return mint(t, f.aES, func(c *auth.Claims) { c.Org = "" }) },
			wantErr: "missing org",
		},
		{
			name:    "org not an ODS code",
			token:   func(t *testing.T) string { return mint(t, f.aES, func(c *auth.Claims) { c.Org = "RX1 OR 1=1" }) },
			wantErr: "bad org",
		},
		{
			name:    "missing org_type",
			token:   func(t *testing.T) string { return mint(t, f.aES, func(c *auth.Claims) { c.OrgType = "" }) },
			wantErr: "missing org_type",
		},
		{
			name:    "bad org_type",
			token:   func(t *testing.T) string { return mint(t, f.aES, func(c *auth.Claims) { c.OrgType = "charity" }) },
			wantErr: "bad org_type",
		},
		{
			name:  "lowercase org is upper-cased",
			token: func(t *testing.T) string { return mint(t, f.aES, func(c *auth.Claims) { c.Org = "rx1" }) },
			want:  nhsPrincipal,
		},
		{
			name: "unknown roles dropped",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.Roles = []string{"root", auth.RoleAuditRead, "careplan:READ"} })
			},
			want: with(func(p *auth.Principal) { p.Roles = []string{auth.RoleAuditRead} }),
		},
		{
			name:  "missing roles means none",
			token: func(t *testing.T) string { return mint(t, f.aES, func(c *auth.Claims) { c.Roles = nil }) },
			want:  with(func(p *auth.Principal) { p.Roles = nil }),
		},
		{
			name: "roles not an array",
			token: func(t *testing.T) string {
				tok := tamper(t, mint(t, f.aES, nil), "roles", auth.RoleAdmin)
				return resign(t, tok, map[string]any{"alg": "ES256", "typ": "JWT", "kid": "a-es"},
					jwt.SigningMethodES256, auth.SignerKey(f.aES))
			},
			wantErr: "bad roles",
		},
		{
			name: "token over 8 KiB",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.Roles = append(c.Roles, strings.Repeat("x", 8<<10)) })
			},
			wantErr: "token too large",
		},
		{
			name: "issuer B token signed with issuer A's key",
			token: func(t *testing.T) string {
				return mint(t, f.aES, func(c *auth.Claims) { c.Issuer = issB })
			},
			wantErr: "unknown signing key",
		},
		{
			name: "issuer B token signed with issuer A's key under B's kid",
			token: func(t *testing.T) string {
				tok := mint(t, f.aES, func(c *auth.Claims) { c.Issuer = issB })
				return resign(t, tok, map[string]any{"alg": "ES256", "typ": "JWT", "kid": "b-es"},
					jwt.SigningMethodES256, auth.SignerKey(f.aES))
			},
			wantErr: "bad signature",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token := tc.token(t)
			got, err := f.v.Verify(context.Background(), token)
			if tc.wantErr != "" {
				if !errors.Is(err, auth.ErrInvalidToken) {
					t.Fatalf("Verify error = %v, want ErrInvalidToken", err)
				}
				if !strings.HasSuffix(err.Error(), ": "+tc.wantErr) {
					t.Errorf("Verify error = %q, want reason %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), token) {
					t.Errorf("Verify error echoes the token")
				}
				if got != nil {
					t.Errorf("Verify returned principal %+v with an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Subject != tc.want.Subject || got.Org != tc.want.Org || got.OrgType != tc.want.OrgType ||
				got.Issuer != tc.want.Issuer || !slices.Equal(got.Roles, tc.want.Roles) {
				t.Errorf("Verify = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	s := mustSigner(t, auth.NewSigner, "k1")
	good := mergeJWKS(t, s)
	tests := []struct {
		name    string
		issuers []auth.IssuerConfig
	}{
		{name: "no issuers"},
		{name: "bad JWKS JSON", issuers: []auth.IssuerConfig{{Issuer: issA, Audience: audience, JWKS: []byte("{")}}},
		{name: "empty JWKS", issuers: []auth.IssuerConfig{{Issuer: issA, Audience: audience, JWKS: []byte(`{"keys":[]}`)}}},
		{
			name: "only a symmetric key",
			issuers: []auth.IssuerConfig{{Issuer: issA, Audience: audience,
				JWKS: []byte(`{"keys":[{"kty":"oct","kid":"k1","alg":"HS256","k":"c2VjcmV0"}]}`)}},
		},
		{
			name: "key without kid",
			issuers: []auth.IssuerConfig{{Issuer: issA, Audience: audience,
				JWKS: editKey(t, good, func(k map[string]any) { delete(k, "kid") })}},
		},
		{
			name: "encryption key",
			issuers: []auth.IssuerConfig{{Issuer: issA, Audience: audience,
				JWKS: editKey(t, good, func(k map[string]any) { k["use"] = "enc" })}},
		},
		{
			name: "ES256 key labelled RS256",
			issuers: []auth.IssuerConfig{{Issuer: issA, Audience: audience,
				JWKS: editKey(t, good, func(k map[string]any) { k["alg"] = "RS256" })}},
		},
		{name: "missing audience", issuers: []auth.IssuerConfig{{Issuer: issA, JWKS: good}}},
		{
			name: "issuer twice",
			issuers: []auth.IssuerConfig{
				{Issuer: issA, Audience: audience, JWKS: good},
				{Issuer: issA, Audience: audience, JWKS: good},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.NewVerifier(auth.Config{Issuers: tc.issuers}); err == nil {
				t.Fatal("NewVerifier succeeded, want error")
			}
		})
	}
}

// editKey changes the first key of a one-key JWK Set.
func editKey(t *testing.T, jwks []byte, edit func(map[string]any)) []byte {
	t.Helper()
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	edit(set.Keys[0])
	out, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
