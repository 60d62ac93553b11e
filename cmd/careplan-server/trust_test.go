package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// TestTrustConfigFile runs the binary with --config: two issuers (one
// mapping national role codes), an allow-list, and a third issuer added by
// flags.
func TestTrustConfigFile(t *testing.T) {
	dir := t.TempDir()
	nhsID, _ := auth.NewSigner("nhs-key")
	councilID, _ := auth.NewRSASigner("council-key")
	flagID, _ := auth.NewSigner("flag-key")
	for name, s := range map[string]*auth.Signer{"nhs.json": nhsID, "council.json": councilID, "flag.json": flagID} {
		jwks, _ := s.JWKS()
		if err := os.WriteFile(filepath.Join(dir, name), jwks, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, "trust.yaml")
	if err := os.WriteFile(config, []byte(`issuers:
  - issuer: https://identity.nhs.test
    audience: careplan
    jwks_file: nhs.json
    claims: {org: nhsid_org, org_type: org_kind, roles: nhsid_roles}
    role_map:
      R8000: [careplan:read, careplan:write]
  - issuer: https://login.council.test
    audience: careplan
    jwks_file: council.json
allowed_orgs: [RXA, C123, RFL]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startRun(t, "--config", config, "--issuer", "https://flags.test", "--jwks", filepath.Join(dir, "flag.json"))
	plans := r.plans()
	now := time.Now()
	mint := func(s *auth.Signer, c auth.Claims) context.Context {
		c.Audience, c.Subject, c.ExpiresAt = []string{"careplan"}, "user-1", now.Add(time.Hour)
		tok, err := s.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
	}
	tests := []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{"NHS issuer, national role code R8000", mint(nhsID, auth.Claims{Issuer: "https://identity.nhs.test",
			Extra: map[string]any{"nhsid_org": "RXA", "org_kind": "nhs", "nhsid_roles": []string{"R8000"}}}), codes.NotFound},
		{"council issuer, careplan roles", mint(councilID, auth.Claims{Issuer: "https://login.council.test", Org: "C123", OrgType: "council",
			Roles: []string{auth.RoleRead}}), codes.NotFound},
		{"issuer added by flags", mint(flagID, auth.Claims{Issuer: "https://flags.test", Org: "RFL", OrgType: "nhs",
			Roles: []string{auth.RoleRead}}), codes.NotFound},
		{"organisation outside the allow-list", mint(councilID, auth.Claims{Issuer: "https://login.council.test", Org: "C999", OrgType: "council",
			Roles: []string{auth.RoleRead}}), codes.PermissionDenied},
		{"council token signed by the NHS key", mint(nhsID, auth.Claims{Issuer: "https://login.council.test", Org: "C123", OrgType: "council",
			Roles: []string{auth.RoleRead}}), codes.Unauthenticated},
		{"unknown national role code only", mint(nhsID, auth.Claims{Issuer: "https://identity.nhs.test",
			Extra: map[string]any{"nhsid_org": "RXA", "org_kind": "nhs", "nhsid_roles": []string{"R9999"}}}), codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plans.GetCarePlan(tc.ctx, &careplanv1.GetCarePlanRequest{NhsNumber: "9434765919"})
			if status.Code(err) != tc.want {
				t.Fatalf("GetCarePlan: %v, want %v", err, tc.want)
			}
		})
	}
}
