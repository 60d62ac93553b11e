package auth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/careplan/careplan/auth"
)

// FuzzVerify: no token text makes Verify panic, and the only token it
// accepts is the one really signed by the trusted key.
func FuzzVerify(f *testing.F) {
	signer, err := auth.NewSigner("fuzz-key")
	if err != nil {
		f.Fatal(err)
	}
	jwks, _ := signer.JWKS()
	v, err := auth.NewVerifier(auth.Config{Issuers: []auth.IssuerConfig{{Issuer: "iss", Audience: "careplan", JWKS: jwks}}})
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	valid, err := signer.Mint(auth.Claims{Issuer: "iss", Audience: []string{"careplan"}, Subject: "s", Org: "RXA", OrgType: "nhs",
		Roles: []string{auth.RoleRead}, ExpiresAt: now.Add(24 * time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	parts := strings.Split(valid, ".")
	f.Add(valid)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add("eyJhbGciOiJub25lIn0." + parts[1] + ".")
	f.Add(strings.Repeat("a", 9000))
	f.Add("..")
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(context.Background(), token)
		if err == nil && token != valid {
			t.Fatalf("accepted a token that was never signed: %q → %+v", token, p)
		}
	})
}
