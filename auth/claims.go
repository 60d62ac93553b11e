package auth

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// ClaimNames names the claims that carry the caller's organisation, its type
// and its roles. Identity providers name them differently (an NHS one may say
// "nhsid_org"), so each issuer sets its own. An empty field means careplan's
// own name: "org", "org_type" or "roles", which is what Signer writes.
type ClaimNames struct {
	Org, OrgType, Roles string
}

func (n ClaimNames) orDefaults() ClaimNames {
	return ClaimNames{
		Org:     cmp.Or(n.Org, "org"),
		OrgType: cmp.Or(n.OrgType, "org_type"),
		Roles:   cmp.Or(n.Roles, "roles"),
	}
}

// tokenClaims is a JWT payload as Verify reads it: the registered claims,
// which the JWT library checks, and every claim undecoded, so that each
// issuer's own claim names are read only once its signature has been checked.
type tokenClaims struct {
	jwt.RegisteredClaims
	raw map[string]json.RawMessage
}

func (c *tokenClaims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.RegisteredClaims); err != nil {
		return err
	}
	return json.Unmarshal(b, &c.raw)
}

// claim decodes the named claim into v, leaving v as it is if the claim is
// absent or null. It reports false if the claim has the wrong JSON type.
func (c *tokenClaims) claim(name string, v any) bool {
	raw, ok := c.raw[name]
	return !ok || json.Unmarshal(raw, v) == nil
}

// odsCode matches an ODS organisation code once upper-cased.
var odsCode = regexp.MustCompile(`^[A-Z0-9]{1,9}$`)

var orgTypes = map[string]careplanv1.Organisation_Type{
	"nhs":     careplanv1.Organisation_TYPE_NHS,
	"council": careplanv1.Organisation_TYPE_COUNCIL,
}

// claimMapping reads one issuer's claims in careplan's terms.
type claimMapping struct {
	names ClaimNames
	// roleMap is IssuerConfig.RoleMap; orgTypes is orgTypes plus
	// IssuerConfig.OrgTypeMap.
	roleMap  map[string][]string
	orgTypes map[string]careplanv1.Organisation_Type
	// mayTypes and mayOrgs are IssuerConfig.OrgTypes and Orgs; nil allows
	// any.
	mayTypes map[careplanv1.Organisation_Type]bool
	mayOrgs  map[string]bool
}

func newClaimMapping(ic IssuerConfig) (claimMapping, error) {
	if err := CheckRoleMap(ic.RoleMap); err != nil {
		return claimMapping{}, fmt.Errorf("role map: %w", err)
	}
	if err := CheckOrgTypeMap(ic.OrgTypeMap); err != nil {
		return claimMapping{}, fmt.Errorf("org type map: %w", err)
	}
	// Copies, so that a caller changing its config cannot race with Verify.
	roleMap := make(map[string][]string, len(ic.RoleMap))
	for from, to := range ic.RoleMap {
		roleMap[from] = slices.Clone(to)
	}
	types := maps.Clone(orgTypes)
	for from, to := range ic.OrgTypeMap {
		types[from] = orgTypes[to]
	}
	m := claimMapping{names: ic.Claims.orDefaults(), roleMap: roleMap, orgTypes: types}
	if err := CheckOrgTypes(ic.OrgTypes); err != nil {
		return claimMapping{}, fmt.Errorf("org types: %w", err)
	}
	for _, t := range ic.OrgTypes {
		if m.mayTypes == nil {
			m.mayTypes = map[careplanv1.Organisation_Type]bool{}
		}
		m.mayTypes[orgTypes[t]] = true
	}
	var err error
	if m.mayOrgs, err = odsSet(ic.Orgs); err != nil {
		return claimMapping{}, fmt.Errorf("orgs: %w", err)
	}
	return m, nil
}

// odsSet returns codes upper case as a set, or nil for none; it fails on a
// value that is not an ODS code.
func odsSet(codes []string) (map[string]bool, error) {
	var set map[string]bool
	for _, c := range codes {
		code := strings.ToUpper(c)
		if !odsCode.MatchString(code) {
			return nil, fmt.Errorf("%q is not an ODS code", c)
		}
		if set == nil {
			set = map[string]bool{}
		}
		set[code] = true
	}
	return set, nil
}

// CheckODSCodes reports the first value that is not an ODS code.
func CheckODSCodes(codes []string) error {
	_, err := odsSet(codes)
	return err
}

// CheckOrgTypes reports the first value that is not an organisation type
// ("nhs" or "council").
func CheckOrgTypes(types []string) error {
	for _, t := range types {
		if _, ok := orgTypes[t]; !ok {
			return fmt.Errorf("%q is not an organisation type (want nhs or council)", t)
		}
	}
	return nil
}

// principal checks the service's own claims, which the JWT library knows
// nothing about, and turns verified claims into the caller.
func (m *claimMapping) principal(c *tokenClaims) (*Principal, error) {
	if c.Subject == "" {
		return nil, reject("missing sub")
	}
	var org, orgType string
	var roles []string
	if !c.claim(m.names.Org, &org) {
		return nil, reject("bad org")
	}
	if org == "" {
		return nil, reject("missing org")
	}
	org = strings.ToUpper(org)
	if !odsCode.MatchString(org) {
		return nil, reject("bad org")
	}
	if !c.claim(m.names.OrgType, &orgType) {
		return nil, reject("bad org_type")
	}
	if orgType == "" {
		return nil, reject("missing org_type")
	}
	typ, ok := m.orgTypes[orgType]
	if !ok {
		return nil, reject("bad org_type")
	}
	if m.mayTypes != nil && !m.mayTypes[typ] {
		return nil, reject("issuer may not vouch for this organisation type")
	}
	if m.mayOrgs != nil && !m.mayOrgs[org] {
		return nil, reject("issuer may not vouch for this organisation")
	}
	if !c.claim(m.names.Roles, &roles) {
		return nil, reject("bad roles")
	}
	return &Principal{
		Subject: c.Subject,
		Org:     org,
		OrgType: typ,
		Roles:   m.roles(roles),
		Issuer:  c.Issuer,
	}, nil
}

// roles turns the token's role values into careplan roles: a careplan role
// name counts as itself, and the role map adds what a value (such as a
// national role code) grants. The map only adds. Other values, and repeats,
// are dropped rather than rejected, so an issuer can carry roles meant for
// other services.
func (m *claimMapping) roles(values []string) []string {
	var roles []string
	add := func(r string) {
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	for _, v := range values {
		if IsRole(v) {
			add(v)
		}
		for _, r := range m.roleMap[v] {
			add(r)
		}
	}
	return roles
}

// CheckRoleMap reports the first entry of a role map (token role value →
// careplan roles) whose value is empty or whose target is not a careplan
// role. NewVerifier runs it; it is exported so a configuration loader can
// point at the line at fault.
func CheckRoleMap(m map[string][]string) error {
	for _, from := range slices.Sorted(maps.Keys(m)) {
		if from == "" {
			return errors.New("empty role value")
		}
		for _, to := range m[from] {
			if !IsRole(to) {
				return fmt.Errorf("%q maps to %q, which is not a careplan role (want one of %s)",
					from, to, strings.Join(knownRoles, ", "))
			}
		}
	}
	return nil
}

// CheckOrgTypeMap reports the first entry of an org type map (token value →
// "nhs" or "council") that is empty or names another type.
func CheckOrgTypeMap(m map[string]string) error {
	for _, from := range slices.Sorted(maps.Keys(m)) {
		if from == "" {
			return errors.New("empty organisation type value")
		}
		if _, ok := orgTypes[m[from]]; !ok {
			return fmt.Errorf("%q maps to %q, which is not an organisation type (want nhs or council)", from, m[from])
		}
	}
	return nil
}
