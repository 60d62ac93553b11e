package auth

import (
	"regexp"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// tokenClaims is the JWT payload on the wire. Signer writes it and Verifier
// reads it, so the claim names live in one place.
type tokenClaims struct {
	jwt.RegisteredClaims
	Org     string   `json:"org,omitempty"`
	OrgType string   `json:"org_type,omitempty"`
	Roles   []string `json:"roles,omitempty"`
}

// odsCode matches an ODS organisation code once upper-cased.
var odsCode = regexp.MustCompile(`^[A-Z0-9]{1,9}$`)

var orgTypes = map[string]careplanv1.Organisation_Type{
	"nhs":     careplanv1.Organisation_TYPE_NHS,
	"council": careplanv1.Organisation_TYPE_COUNCIL,
}

var knownRoles = []string{RoleRead, RoleWrite, RoleBreakGlass, RoleAuditRead, RoleAdmin}

// principal checks the service's own claims, which the JWT library knows
// nothing about, and turns verified claims into the caller. Unknown (and
// repeated) roles are dropped rather than rejected, so an issuer can add roles
// meant for other services.
func (c *tokenClaims) principal() (*Principal, error) {
	if c.Subject == "" {
		return nil, reject("missing sub")
	}
	if c.Org == "" {
		return nil, reject("missing org")
	}
	org := strings.ToUpper(c.Org)
	if !odsCode.MatchString(org) {
		return nil, reject("bad org")
	}
	if c.OrgType == "" {
		return nil, reject("missing org_type")
	}
	orgType, ok := orgTypes[c.OrgType]
	if !ok {
		return nil, reject("bad org_type")
	}
	var roles []string
	for _, r := range c.Roles {
		if slices.Contains(knownRoles, r) && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	return &Principal{
		Subject: c.Subject,
		Org:     org,
		OrgType: orgType,
		Roles:   roles,
		Issuer:  c.Issuer,
	}, nil
}
