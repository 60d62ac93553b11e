package auth

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
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
	// encoding/json keeps the last of repeated names, as RFC 7519 allows,
	// but a gateway or log in front may keep the first: a token must name
	// each claim once to mean one thing to every reader.
	if err := json.Unmarshal(b, &c.raw); err != nil {
		return err
	}
	if !uniqueMembers(b) {
		return reject("duplicate claim")
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		if !isNumericDate(c.raw[name]) {
			return reject("bad " + name)
		}
	}
	// Decoded by exact name: encoding/json matches struct fields without
	// regard to case, and would take "EXP" or "Iss" for registered claims.
	r := &c.RegisteredClaims
	for name, field := range map[string]any{
		"iss": &r.Issuer, "sub": &r.Subject, "aud": &r.Audience, "jti": &r.ID,
		"exp": &r.ExpiresAt, "nbf": &r.NotBefore, "iat": &r.IssuedAt,
	} {
		if raw, ok := c.raw[name]; ok {
			if err := json.Unmarshal(raw, field); err != nil {
				return err
			}
		}
	}
	return nil
}

// maxNumericDate is 9999-12-31T23:59:59Z. Larger values, converted to
// int64 seconds, come out differently on different CPUs.
const maxNumericDate = 253402300799

// isNumericDate reports whether raw is absent, null, or a NumericDate (RFC
// 7519 section 2): a JSON number, here from 1970 to the year 9999. The JWT
// library would also take a string holding a number.
func isNumericDate(raw json.RawMessage) bool {
	if raw == nil || string(raw) == "null" {
		return true
	}
	if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return err == nil && f >= 0 && f <= maxNumericDate
}

// uniqueMembers reports whether b is a JSON object that names no member
// twice.
func uniqueMembers(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		name, _ := tok.(string)
		if seen[name] {
			return false
		}
		seen[name] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return false
		}
	}
	return true
}

// claim decodes the named claim into v, leaving v as it is if the claim is
// absent or null. It reports false if the claim has the wrong JSON type.
func (c *tokenClaims) claim(name string, v any) bool {
	raw, ok := c.raw[name]
	return !ok || json.Unmarshal(raw, v) == nil
}

// odsCode matches an ODS organisation code in either case. It is checked
// before upper-casing, because strings.ToUpper turns some other letters
// into ASCII ones ("ı" into "I", "ſ" into "S").
var odsCode = regexp.MustCompile(`^[A-Za-z0-9]{1,9}$`)

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
		if !odsCode.MatchString(c) {
			return nil, fmt.Errorf("%q is not an ODS code", c)
		}
		code := strings.ToUpper(c)
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
	if !odsCode.MatchString(org) {
		return nil, reject("bad org")
	}
	org = strings.ToUpper(org)
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
