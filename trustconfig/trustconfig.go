// Package trustconfig reads the trust configuration file: the token issuers
// careplan trusts (for example the NHS identity service and a council's own
// identity provider), how each one's claims map to careplan's, and the
// organisations allowed to connect. It turns the file, with any one-issuer
// command-line flags, into an auth.Config.
//
// A file looks like this:
//
//	issuers:
//	  - issuer: https://identity.nhs.example
//	    audience: careplan
//	    jwks_url: https://identity.nhs.example/.well-known/jwks.json
//	    claims: {org: nhsid_org, org_type: org_kind, roles: nhsid_roles}
//	    org_type_map: {"NHS Trust": nhs}
//	    org_types: [nhs]
//	    role_map:
//	      R8000: [careplan:read, careplan:write]
//	      R0243: [careplan:read]
//	  - issuer: https://login.council.example
//	    audience: careplan
//	    jwks_file: council-jwks.json
//	    org_types: [council]
//	    orgs: [C123]
//	allowed_orgs: [RXA, C123]
package trustconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/careplan/careplan/auth"
)

// File is a trust configuration.
type File struct {
	Issuers []Issuer `yaml:"issuers"`
	// AllowedOrgs lists the ODS codes whose callers may connect; empty
	// allows any organisation the issuers vouch for.
	AllowedOrgs []string `yaml:"allowed_orgs"`
}

// Issuer is one trusted issuer. Its fields are those of auth.IssuerConfig,
// which documents them, except that keys come from a file or a URL.
type Issuer struct {
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// JWKSFile is a JWK Set file. Load resolves a relative path against
	// the configuration file's directory, so the file can move with it.
	JWKSFile string `yaml:"jwks_file"`
	// JWKSURL is an https URL serving the JWK Set.
	JWKSURL string `yaml:"jwks_url"`
	// RefreshInterval and MinRefreshInterval apply to JWKSURL, written as
	// Go durations ("1h", "90s").
	RefreshInterval    time.Duration       `yaml:"refresh_interval"`
	MinRefreshInterval time.Duration       `yaml:"min_refresh_interval"`
	Claims             Claims              `yaml:"claims"`
	RoleMap            map[string][]string `yaml:"role_map"`
	OrgTypeMap         map[string]string   `yaml:"org_type_map"`
	OrgTypes           []string            `yaml:"org_types"`
	Orgs               []string            `yaml:"orgs"`
}

// Claims are auth.ClaimNames as the file spells them.
type Claims struct {
	Org     string `yaml:"org"`
	OrgType string `yaml:"org_type"`
	Roles   string `yaml:"roles"`
}

// Load reads and checks the trust configuration at path. Unknown keys are
// errors, so a misspelt key is not silently ignored, and every error names
// the file and, where it can, the line.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trustconfig: %w", err)
	}
	f, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("trustconfig: %s: %w", path, err)
	}
	for i, iss := range f.Issuers {
		if iss.JWKSFile != "" && !filepath.IsAbs(iss.JWKSFile) {
			f.Issuers[i].JWKSFile = filepath.Join(filepath.Dir(path), iss.JWKSFile)
		}
	}
	return f, nil
}

func parse(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file")
		}
		return nil, decodeError(err)
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	// A second, lenient, decode keeps each issuer's node, for the lines
	// that the checks below name.
	var nodes struct {
		Issuers []yaml.Node `yaml:"issuers"`
	}
	if err := yaml.Unmarshal(data, &nodes); err != nil {
		return nil, decodeError(err)
	}
	if err := f.check(nodes.Issuers); err != nil {
		return nil, err
	}
	return &f, nil
}

// unknownField is how yaml words an unknown key.
var unknownField = regexp.MustCompile(`field (.+) not found in type \S+`)

// decodeError rewords yaml's type errors ("line 4: field jwks_ur not found
// in type trustconfig.Issuer") in the file's own terms.
func decodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		msgs[i] = unknownField.ReplaceAllString(m, `unknown key "$1"`)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// check validates what decoding cannot. The rules on URLs and role names are
// auth's own, so the file cannot pass here and fail in auth.NewVerifier.
func (f *File) check(nodes []yaml.Node) error {
	if len(f.Issuers) == 0 {
		return errors.New("no issuers listed")
	}
	firstLine := map[string]int{}
	for i := range f.Issuers {
		iss, n := &f.Issuers[i], &nodes[i]
		name := fmt.Sprintf("issuers[%d]", i)
		if iss.Issuer != "" {
			name += " (" + iss.Issuer + ")"
		}
		bad := func(key string, err error) error {
			return fmt.Errorf("line %d: %s: %w", lineOf(n, key), name, err)
		}
		switch {
		case iss.Issuer == "":
			return bad("issuer", errors.New("issuer is required"))
		case firstLine[iss.Issuer] != 0:
			return bad("issuer", fmt.Errorf("issuer already listed at line %d", firstLine[iss.Issuer]))
		case iss.Audience == "":
			return bad("audience", errors.New("audience is required"))
		case (iss.JWKSFile == "") == (iss.JWKSURL == ""):
			return bad("jwks_url", errors.New("set exactly one of jwks_file and jwks_url"))
		case iss.RefreshInterval < 0:
			return bad("refresh_interval", errors.New("refresh_interval is negative"))
		case iss.MinRefreshInterval < 0:
			return bad("min_refresh_interval", errors.New("min_refresh_interval is negative"))
		}
		firstLine[iss.Issuer] = lineOf(n, "issuer")
		if iss.JWKSURL != "" {
			if err := auth.CheckJWKSURL(iss.JWKSURL); err != nil {
				return bad("jwks_url", fmt.Errorf("jwks_url: %w", err))
			}
		}
		if err := auth.CheckRoleMap(iss.RoleMap); err != nil {
			return bad("role_map", fmt.Errorf("role_map: %w", err))
		}
		if err := auth.CheckOrgTypeMap(iss.OrgTypeMap); err != nil {
			return bad("org_type_map", fmt.Errorf("org_type_map: %w", err))
		}
		if err := auth.CheckOrgTypes(iss.OrgTypes); err != nil {
			return bad("org_types", fmt.Errorf("org_types: %w", err))
		}
		if err := auth.CheckODSCodes(iss.Orgs); err != nil {
			return bad("orgs", fmt.Errorf("orgs: %w", err))
		}
	}
	return nil
}

// lineOf returns the line of key in the mapping n, or n's own line if the
// key is absent.
func lineOf(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}
