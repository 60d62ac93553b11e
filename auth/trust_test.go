package auth_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// The national RBAC role codes the tests map.
const (
	clinicalPractitioner = "R8000"
	socialCareWorker     = "R0243"
)

// TestTrust verifies tokens from two issuers configured as an NHS identity
// service would be (keys at an https URL, its own claim names, national role
// codes) and as a council's identity provider would be (a JWKS file, careplan's
// claim names), behind an allow-list of organisations.
func TestTrust(t *testing.T) {
	nhsKey, councilKey := mustSigner(t, auth.NewRSASigner, "nhs-1"), mustSigner(t, auth.NewSigner, "council-1")
	srv := newJWKSServer(t, mergeJWKS(t, nhsKey))
	nhs := urlIssuer(srv)
	nhs.Claims = auth.ClaimNames{Org: "nhsid_org", OrgType: "org_kind", Roles: "nhsid_roles"}
	nhs.RoleMap = map[string][]string{
		clinicalPractitioner: {auth.RoleRead, auth.RoleWrite},
		socialCareWorker:     {auth.RoleRead},
	}
	nhs.OrgTypeMap = map[string]string{"NHS Trust": "nhs"}
	nhs.OrgTypes = []string{"nhs"}
	v, err := auth.NewVerifier(auth.Config{
		Issuers: []auth.IssuerConfig{
			nhs,
			{Issuer: issB, Audience: audience, JWKS: mergeJWKS(t, councilKey),
				OrgTypes: []string{"council"}, Orgs: []string{"c123", "C999"}},
		},
		AllowedOrgs: []string{"RXA", "c123"},
		Now:         func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)

	// nhsToken is an NHS identity service token in its own claim names.
	nhsToken := func(t *testing.T, edit func(c *auth.Claims)) string {
		return mint(t, nhsKey, func(c *auth.Claims) {
			c.Org, c.OrgType, c.Roles = "", "", nil
			c.Extra = map[string]any{"nhsid_org": "RXA", "org_kind": "NHS Trust", "nhsid_roles": []string{clinicalPractitioner}}
			if edit != nil {
				edit(c)
			}
		})
	}
	councilToken := func(t *testing.T, edit func(c *auth.Claims)) string {
		return mint(t, councilKey, func(c *auth.Claims) {
			c.Issuer, c.Org, c.OrgType = issB, "C123", "council"
			if edit != nil {
				edit(c)
			}
		})
	}
	nhsPrincipal := &auth.Principal{Subject: "user-1", Org: "RXA", OrgType: careplanv1.Organisation_TYPE_NHS,
		Roles: []string{auth.RoleRead, auth.RoleWrite}, Issuer: issA}

	tests := []struct {
		name  string
		token func(t *testing.T) string
		want  *auth.Principal
		// wantErr is the reason; wantIs, if set, must also be wrapped.
		wantErr string
		wantIs  error
	}{
		{
			name:  "NHS token: keys by URL, own claim names, R8000 mapped to careplan roles",
			token: func(t *testing.T) string { return nhsToken(t, nil) },
			want:  nhsPrincipal,
		},
		{
			name: "R0243 maps to read only, and an unknown code is dropped",
			token: func(t *testing.T) string {
				return nhsToken(t, func(c *auth.Claims) { c.Extra["nhsid_roles"] = []string{"R9999", socialCareWorker} })
			},
			want: withRoles(nhsPrincipal, auth.RoleRead),
		},
		{
			name: "careplan role names still count beside mapped codes",
			token: func(t *testing.T) string {
				return nhsToken(t, func(c *auth.Claims) {
					c.Extra["nhsid_roles"] = []string{auth.RoleAuditRead, clinicalPractitioner, auth.RoleRead}
				})
			},
			want: withRoles(nhsPrincipal, auth.RoleAuditRead, auth.RoleRead, auth.RoleWrite),
		},
		{
			name: "careplan's own org type word still counts",
			token: func(t *testing.T) string {
				return nhsToken(t, func(c *auth.Claims) { c.Extra["org_kind"] = "nhs" })
			},
			want: nhsPrincipal,
		},
		{
			name: "org type the map does not know",
			token: func(t *testing.T) string {
				return nhsToken(t, func(c *auth.Claims) { c.Extra["org_kind"] = "GP Practice" })
			},
			wantErr: "bad org_type",
		},
		{
			name: "NHS token in careplan's claim names lacks the issuer's org claim",
			token: func(t *testing.T) string {
				return mint(t, nhsKey, func(c *auth.Claims) { c.Org = "RXA" })
			},
			wantErr: "missing org",
		},
		{
			name: "roles claim not an array",
			token: func(t *testing.T) string {
				return nhsToken(t, func(c *auth.Claims) { c.Extra["nhsid_roles"] = clinicalPractitioner })
			},
			wantErr: "bad roles",
		},
		{
			name: "org claim not a string",
			token: func(t *testing.T) string {
				return nhsToken(t, func(c *auth.Claims) { c.Extra["nhsid_org"] = 42 })
			},
			wantErr: "bad org",
		},
		{
			name:  "council token: keys from a file, careplan's claim names",
			token: func(t *testing.T) string { return councilToken(t, nil) },
			want: &auth.Principal{Subject: "user-1", Org: "C123", OrgType: careplanv1.Organisation_TYPE_COUNCIL,
				Roles: []string{auth.RoleRead, auth.RoleWrite}, Issuer: issB},
		},
		{
			name: "role codes mean nothing to an issuer without a role map",
			token: func(t *testing.T) string {
				return councilToken(t, func(c *auth.Claims) { c.Roles = []string{clinicalPractitioner} })
			},
			want: &auth.Principal{Subject: "user-1", Org: "C123", OrgType: careplanv1.Organisation_TYPE_COUNCIL, Issuer: issB},
		},
		{
			name: "NHS issuer's token signed by the council's key",
			token: func(t *testing.T) string {
				return mint(t, councilKey, nil)
			},
			wantErr: "unknown signing key",
		},
		{
			name: "council issuer's token signed by the NHS key",
			token: func(t *testing.T) string {
				return mint(t, nhsKey, func(c *auth.Claims) { c.Issuer = issB })
			},
			wantErr: "unknown signing key",
		},
		{
			name: "organisation outside the allow-list",
			token: func(t *testing.T) string {
				return councilToken(t, func(c *auth.Claims) { c.Org = "C999" })
			},
			wantErr: "organisation not allowed",
			wantIs:  auth.ErrOrgNotAllowed,
		},
		{
			name: "council issuer's token claiming an NHS trust",
			token: func(t *testing.T) string {
				return councilToken(t, func(c *auth.Claims) { c.Org, c.OrgType = "RXA", "nhs" })
			},
			wantErr: "issuer may not vouch for this organisation type",
		},
		{
			name: "NHS issuer's token claiming a council",
			token: func(t *testing.T) string {
				return nhsToken(t, func(c *auth.Claims) { c.Extra["org_kind"] = "council" })
			},
			wantErr: "issuer may not vouch for this organisation type",
		},
		{
			name: "council issuer's token for a council it does not vouch for",
			token: func(t *testing.T) string {
				return councilToken(t, func(c *auth.Claims) { c.Org = "C456" })
			},
			wantErr: "issuer may not vouch for this organisation",
		},
		{
			name: "allow-list ignores case",
			token: func(t *testing.T) string {
				return nhsToken(t, func(c *auth.Claims) { c.Extra["nhsid_org"] = "rxa" })
			},
			want: nhsPrincipal,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tc.token(t))
			if tc.wantErr != "" {
				if !errors.Is(err, auth.ErrInvalidToken) || !strings.HasSuffix(err.Error(), ": "+tc.wantErr) {
					t.Fatalf("Verify error = %v, want ErrInvalidToken with reason %q", err, tc.wantErr)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Errorf("Verify error = %v, want it to wrap %v", err, tc.wantIs)
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

func withRoles(p *auth.Principal, roles ...string) *auth.Principal {
	q := *p
	q.Roles = roles
	return &q
}

func TestNewVerifierRejectsBadTrust(t *testing.T) {
	good := mergeJWKS(t, mustSigner(t, auth.NewSigner, "k1"))
	srv := newJWKSServer(t, good)
	failing := newJWKSServer(t, good)
	failing.set(http.StatusInternalServerError, nil)
	useless := newJWKSServer(t, []byte(`{"keys":[{"kty":"oct","kid":"k1","alg":"HS256","k":"c2VjcmV0"}]}`))
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(good) }))
	t.Cleanup(plain.Close)
	redirect := httptest.NewTLSServer(http.RedirectHandler(plain.URL, http.StatusFound))
	t.Cleanup(redirect.Close)

	withURL := func(s *jwksServer, edit func(*auth.IssuerConfig)) []auth.IssuerConfig {
		ic := urlIssuer(s)
		if edit != nil {
			edit(&ic)
		}
		return []auth.IssuerConfig{ic}
	}
	tests := []struct {
		name        string
		issuers     []auth.IssuerConfig
		allowedOrgs []string
		wantErr     string
	}{
		{
			name:    "http JWKS URL",
			issuers: withURL(srv, func(ic *auth.IssuerConfig) { ic.JWKSURL = plain.URL }),
			wantErr: "must use https",
		},
		{
			name:    "both JWKS and JWKSURL",
			issuers: withURL(srv, func(ic *auth.IssuerConfig) { ic.JWKS = good }),
			wantErr: "set exactly one of JWKS and JWKSURL",
		},
		{
			name:    "neither JWKS nor JWKSURL",
			issuers: []auth.IssuerConfig{{Issuer: issA, Audience: audience}},
			wantErr: "set exactly one of JWKS and JWKSURL",
		},
		{
			name:    "first fetch fails",
			issuers: withURL(failing, nil),
			wantErr: "500",
		},
		{
			name:    "first fetch has no usable key",
			issuers: withURL(useless, nil),
			wantErr: "no usable RS256 or ES256 signing key",
		},
		{
			name:    "endpoint's certificate not trusted",
			issuers: withURL(srv, func(ic *auth.IssuerConfig) { ic.HTTPClient = nil }),
			wantErr: "certificate",
		},
		{
			name: "redirect off https",
			issuers: withURL(srv, func(ic *auth.IssuerConfig) {
				ic.JWKSURL, ic.HTTPClient = redirect.URL, redirect.Client()
			}),
			wantErr: "not https",
		},
		{
			name:    "negative MinRefreshInterval",
			issuers: withURL(srv, func(ic *auth.IssuerConfig) { ic.MinRefreshInterval = -time.Second }),
			wantErr: "negative JWKS refresh interval",
		},
		{
			name: "role map target not a careplan role",
			issuers: withURL(srv, func(ic *auth.IssuerConfig) {
				ic.RoleMap = map[string][]string{clinicalPractitioner: {"careplan:reed"}}
			}),
			wantErr: `role map: "R8000" maps to "careplan:reed", which is not a careplan role`,
		},
		{
			name: "org type map target not an org type",
			issuers: withURL(srv, func(ic *auth.IssuerConfig) {
				ic.OrgTypeMap = map[string]string{"NHS Trust": "hospital"}
			}),
			wantErr: `org type map: "NHS Trust" maps to "hospital"`,
		},
		{
			name:    "issuer org type not an org type",
			issuers: withURL(srv, func(ic *auth.IssuerConfig) { ic.OrgTypes = []string{"nhs", "trust"} }),
			wantErr: `org types: "trust" is not an organisation type`,
		},
		{
			name:    "issuer org not an ODS code",
			issuers: withURL(srv, func(ic *auth.IssuerConfig) { ic.Orgs = []string{"R X"} }),
			wantErr: `orgs: "R X" is not an ODS code`,
		},
		{
			name:        "allowed organisation not an ODS code",
			issuers:     withURL(srv, nil),
			allowedOrgs: []string{"RXA", "R X"},
			wantErr:     `allowed organisation "R X" is not an ODS code`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := auth.NewVerifier(auth.Config{Issuers: tc.issuers, AllowedOrgs: tc.allowedOrgs, Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				v.Close()
				t.Fatalf("NewVerifier succeeded, want error containing %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("NewVerifier error = %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestWarnsOfIssuerWithoutOrgTypes: with several issuers, one that may vouch
// for any organisation type is named in a warning at start.
func TestWarnsOfIssuerWithoutOrgTypes(t *testing.T) {
	var logs bytes.Buffer
	v, err := auth.NewVerifier(auth.Config{
		Issuers: []auth.IssuerConfig{
			{Issuer: issA, Audience: audience, JWKS: mergeJWKS(t, mustSigner(t, auth.NewSigner, "a")), OrgTypes: []string{"nhs"}},
			{Issuer: issB, Audience: audience, JWKS: mergeJWKS(t, mustSigner(t, auth.NewSigner, "b"))},
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), issB) || strings.Contains(logs.String(), issA) {
		t.Fatalf("want one warning naming %s only; logs:\n%s", issB, logs.String())
	}
}
