// Package auth verifies bearer JWTs against a trusted JWKS and carries the
// verified caller (the Principal) through the request context.
package auth

import (
	"context"
	"slices"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Roles a principal may hold. A token carries them in its roles claim, by
// name or through the issuer's role map (IssuerConfig.RoleMap).
const (
	RoleRead       = "careplan:read"
	RoleWrite      = "careplan:write"
	RoleBreakGlass = "careplan:break-glass"
	RoleAuditRead  = "audit:read"
	RoleAdmin      = "careplan:admin"
)

var knownRoles = []string{RoleRead, RoleWrite, RoleBreakGlass, RoleAuditRead, RoleAdmin}

// IsRole reports whether name is one of the careplan roles above. Role maps
// are checked with it, so a typo in a trust configuration fails at start
// instead of silently granting nothing.
func IsRole(name string) bool { return slices.Contains(knownRoles, name) }

// Principal is the verified caller.
type Principal struct {
	Subject string
	// Org is the caller's ODS code, upper case.
	Org     string
	OrgType careplanv1.Organisation_Type
	Roles   []string
	Issuer  string
}

// HasRole reports whether the principal holds role.
func (p *Principal) HasRole(role string) bool {
	return p != nil && slices.Contains(p.Roles, role)
}

// Actor is the principal as recorded on a stored change.
func (p *Principal) Actor() *careplanv1.Actor {
	return &careplanv1.Actor{Subject: p.Subject, OrgCode: p.Org, OrgType: p.OrgType}
}

type principalKey struct{}

// NewContext returns ctx carrying p.
func NewContext(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal stored by NewContext, if any.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok
}
