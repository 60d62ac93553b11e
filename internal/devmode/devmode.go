// Package devmode holds what `careplan-server --dev` and `careplan token`
// share: where the local signing key lives, the issuer it signs as, and the
// two sample callers (an NHS trust and a council).
package devmode

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/careplan/careplan/auth"
)

const (
	// Issuer is the iss of dev tokens.
	Issuer = "careplan-dev"
	// Audience is the default audience of the server and of dev tokens.
	Audience = "careplan"
	// KeyFileName is the signing key, kept beside the data file.
	KeyFileName = "dev-signing-key.pem"
	// TokenLifetime of the printed tokens.
	TokenLifetime = 12 * time.Hour
)

// Caller is a sample organisation's user.
type Caller struct {
	Name, Subject, Org, OrgType string
	Roles                       []string
}

// Callers are the organisations dev mode prints tokens for. They match the
// organisations in the README's example plan.
var Callers = []Caller{
	{Name: "nhs", Subject: "dev-nurse", Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleRead, auth.RoleWrite, auth.RoleBreakGlass, auth.RoleAuditRead, auth.RoleAdmin}},
	{Name: "council", Subject: "dev-social-worker", Org: "C123", OrgType: "council", Roles: []string{auth.RoleRead, auth.RoleWrite, auth.RoleAuditRead}},
	// An emergency department of another trust, named in no plan: it can
	// read only by breaking glass.
	{Name: "emergency", Subject: "dev-ed-doctor", Org: "RYJ", OrgType: "nhs", Roles: []string{auth.RoleRead, auth.RoleBreakGlass}},
}

// KeyPath returns the signing key path for the data file dataPath.
func KeyPath(dataPath string) string {
	return filepath.Join(filepath.Dir(dataPath), KeyFileName)
}

// Signer loads (or creates) the dev signing key for dataPath.
func Signer(dataPath string) (*auth.Signer, error) {
	return auth.LoadOrCreateSigner(KeyPath(dataPath))
}

// Token mints a token for the named sample caller.
func Token(s *auth.Signer, name string, now time.Time) (string, error) {
	for _, c := range Callers {
		if c.Name == name {
			return s.Mint(auth.Claims{
				Issuer: Issuer, Audience: []string{Audience}, Subject: c.Subject,
				Org: c.Org, OrgType: c.OrgType, Roles: c.Roles,
				IssuedAt: now, ExpiresAt: now.Add(TokenLifetime),
			})
		}
	}
	return "", fmt.Errorf("unknown dev caller %q (want nhs, council or emergency)", name)
}
