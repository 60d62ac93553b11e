package trustconfig_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/trustconfig"
)

// TestConfiguredVerifier drives a configuration file through to verified
// tokens: the NHS issuer's keys come over https on loopback, the council's
// from a file beside the configuration, and the flags add a third issuer.
func TestConfiguredVerifier(t *testing.T) {
	nhsKey, councilKey, flagKey := mustSigner(t, "nhs-1"), mustSigner(t, "council-1"), mustSigner(t, "flag-1")
	nhsJWKS := mustJWKS(t, nhsKey)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(nhsJWKS) }))
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	writeFile(t, dir, "council-jwks.json", string(mustJWKS(t, councilKey)))
	writeFile(t, dir, "flag-jwks.json", string(mustJWKS(t, flagKey)))
	path := writeFile(t, dir, "trust.yaml", fmt.Sprintf(`issuers:
  - issuer: %s
    audience: careplan
    jwks_url: %s/jwks.json
    claims: {org: nhsid_org, org_type: org_kind, roles: nhsid_roles}
    org_type_map: {"NHS Trust": nhs}
    role_map:
      R8000: [careplan:read, careplan:write]
      R0243: [careplan:read]
  - issuer: %s
    audience: careplan
    jwks_file: council-jwks.json
    org_types: [council]
allowed_orgs: [RXA, C123]
`, nhsIssuer, srv.URL, councilIssuer))

	f, err := trustconfig.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	const flagIssuer = "https://idp.flags.example"
	if err := f.ApplyFlags(trustconfig.Flags{Issuer: flagIssuer, JWKS: filepath.Join(dir, "flag-jwks.json")}); err != nil {
		t.Fatalf("ApplyFlags: %v", err)
	}
	cfg, err := f.VerifierConfig()
	if err != nil {
		t.Fatalf("VerifierConfig: %v", err)
	}
	cfg.Issuers[0].HTTPClient = srv.Client() // trust the test server's certificate
	cfg.Logger = slog.New(slog.DiscardHandler)
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)

	now := time.Now()
	token := func(s *auth.Signer, c auth.Claims) string {
		c.Subject, c.Audience, c.ExpiresAt = "user-1", []string{"careplan"}, now.Add(time.Minute)
		tok, err := s.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	nhsClaims := func(org, role string) auth.Claims {
		return auth.Claims{Issuer: nhsIssuer, Extra: map[string]any{"nhsid_org": org, "org_kind": "NHS Trust", "nhsid_roles": []string{role}}}
	}
	tests := []struct {
		name      string
		token     string
		wantOrg   string
		wantType  careplanv1.Organisation_Type
		wantRoles []string
		wantErr   error
	}{
		{
			name:      "NHS token, keys by URL, R8000 mapped to careplan roles",
			token:     token(nhsKey, nhsClaims("RXA", "R8000")),
			wantOrg:   "RXA",
			wantType:  careplanv1.Organisation_TYPE_NHS,
			wantRoles: []string{auth.RoleRead, auth.RoleWrite},
		},
		{
			name:      "NHS token with R0243",
			token:     token(nhsKey, nhsClaims("RXA", "R0243")),
			wantOrg:   "RXA",
			wantType:  careplanv1.Organisation_TYPE_NHS,
			wantRoles: []string{auth.RoleRead},
		},
		{
			name:      "council token, keys from a file",
			token:     token(councilKey, auth.Claims{Issuer: councilIssuer, Org: "C123", OrgType: "council", Roles: []string{auth.RoleRead}}),
			wantOrg:   "C123",
			wantType:  careplanv1.Organisation_TYPE_COUNCIL,
			wantRoles: []string{auth.RoleRead},
		},
		{
			name:    "flag issuer's token, under the same allow-list",
			token:   token(flagKey, auth.Claims{Issuer: flagIssuer, Org: "ZZZ9", OrgType: "nhs"}),
			wantErr: auth.ErrOrgNotAllowed,
		},
		{
			name:    "NHS organisation outside the allow-list",
			token:   token(nhsKey, nhsClaims("RYY", "R8000")),
			wantErr: auth.ErrOrgNotAllowed,
		},
		{
			name:    "council issuer's genuine token claiming an NHS trust",
			token:   token(councilKey, auth.Claims{Issuer: councilIssuer, Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleWrite}}),
			wantErr: auth.ErrInvalidToken,
		},
		{
			name:    "council issuer's token signed by the NHS key",
			token:   token(nhsKey, auth.Claims{Issuer: councilIssuer, Org: "C123", OrgType: "council"}),
			wantErr: auth.ErrInvalidToken,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tc.token)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, auth.ErrInvalidToken) {
					t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if p.Org != tc.wantOrg || p.OrgType != tc.wantType || !slices.Equal(p.Roles, tc.wantRoles) {
				t.Errorf("Verify = %+v, want org %s, type %v, roles %v", p, tc.wantOrg, tc.wantType, tc.wantRoles)
			}
		})
	}
}

func mustSigner(t *testing.T, kid string) *auth.Signer {
	t.Helper()
	s, err := auth.NewSigner(kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustJWKS(t *testing.T, s *auth.Signer) []byte {
	t.Helper()
	jwks, err := s.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	return jwks
}
