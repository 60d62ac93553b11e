package trustconfig_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/trustconfig"
)

const (
	nhsIssuer     = "https://identity.nhs.example"
	councilIssuer = "https://login.council.example"
)

// writeFile writes content to name in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const sample = `# Two issuers, as in the package documentation.
issuers:
  - issuer: https://identity.nhs.example
    audience: careplan
    jwks_url: https://identity.nhs.example/.well-known/jwks.json
    min_refresh_interval: 5m
    claims: {org: nhsid_org, org_type: org_kind, roles: nhsid_roles}
    org_type_map: {"NHS Trust": nhs}
    org_types: [nhs]
    role_map:
      R8000: [careplan:read, careplan:write]
      R0243: [careplan:read]
  - issuer: https://login.council.example
    audience: careplan
    jwks_file: keys/council-jwks.json
    org_types: [council]
    orgs: [C123]
allowed_orgs: [RXA, C123]
`

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	got, err := trustconfig.Load(writeFile(t, dir, "trust.yaml", sample))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := &trustconfig.File{
		Issuers: []trustconfig.Issuer{
			{
				Issuer:             nhsIssuer,
				Audience:           "careplan",
				JWKSURL:            nhsIssuer + "/.well-known/jwks.json",
				MinRefreshInterval: 5 * time.Minute,
				Claims:             trustconfig.Claims{Org: "nhsid_org", OrgType: "org_kind", Roles: "nhsid_roles"},
				OrgTypeMap:         map[string]string{"NHS Trust": "nhs"},
				OrgTypes:           []string{"nhs"},
				RoleMap: map[string][]string{
					"R8000": {auth.RoleRead, auth.RoleWrite},
					"R0243": {auth.RoleRead},
				},
			},
			{
				Issuer:   councilIssuer,
				Audience: "careplan",
				// Relative to the file's directory, not the working directory.
				JWKSFile: filepath.Join(dir, "keys", "council-jwks.json"),
				OrgTypes: []string{"council"},
				Orgs:     []string{"C123"},
			},
		},
		AllowedOrgs: []string{"RXA", "C123"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	const nhs = "issuers:\n  - issuer: https://identity.nhs.example\n    audience: careplan\n"
	const nhsURL = nhs + "    jwks_url: https://identity.nhs.example/jwks.json\n"
	const nhsName = "issuers[0] (https://identity.nhs.example): "
	tests := []struct {
		name, yaml string
		// wantErr follows "trustconfig: PATH: ".
		wantErr string
	}{
		{
			name:    "unknown key",
			yaml:    nhs + "    jwks_ur: https://identity.nhs.example/jwks.json\n",
			wantErr: `line 4: unknown key "jwks_ur"`,
		},
		{
			name:    "unknown key in claims",
			yaml:    nhsURL + "    claims: {organisation: nhsid_org}\n",
			wantErr: `line 5: unknown key "organisation"`,
		},
		{
			name:    "unknown top-level key",
			yaml:    nhsURL + "allowed_org: [RXA]\n",
			wantErr: `line 5: unknown key "allowed_org"`,
		},
		{
			name:    "both jwks_file and jwks_url",
			yaml:    nhs + "    jwks_file: nhs.json\n    jwks_url: https://identity.nhs.example/jwks.json\n",
			wantErr: "line 5: " + nhsName + "set exactly one of jwks_file and jwks_url",
		},
		{
			name:    "neither jwks_file nor jwks_url",
			yaml:    nhs,
			wantErr: "line 2: " + nhsName + "set exactly one of jwks_file and jwks_url",
		},
		{
			name:    "http jwks_url",
			yaml:    nhs + "    jwks_url: http://identity.nhs.example/jwks.json\n",
			wantErr: "line 4: " + nhsName + `jwks_url: JWKS URL "http://identity.nhs.example/jwks.json" must use https`,
		},
		{
			name: "role_map target not a careplan role",
			yaml: nhsURL + "    role_map:\n      R8000: [careplan:read, careplan:reed]\n",
			wantErr: "line 5: " + nhsName + `role_map: "R8000" maps to "careplan:reed", which is not a careplan role ` +
				"(want one of careplan:read, careplan:write, careplan:break-glass, audit:read, careplan:admin)",
		},
		{
			name:    "org_type_map target not an org type",
			yaml:    nhsURL + "    org_type_map: {NHS Trust: hospital}\n",
			wantErr: "line 5: " + nhsName + `org_type_map: "NHS Trust" maps to "hospital", which is not an organisation type (want nhs or council)`,
		},
		{
			name:    "org_types value not an org type",
			yaml:    nhsURL + "    org_types: [nhs, trust]\n",
			wantErr: "line 5: " + nhsName + `org_types: "trust" is not an organisation type (want nhs or council)`,
		},
		{
			name:    "orgs value not an ODS code",
			yaml:    nhsURL + "    orgs: [RXA, R X]\n",
			wantErr: "line 5: " + nhsName + `orgs: "R X" is not an ODS code`,
		},
		{
			name:    "issuer missing",
			yaml:    nhsURL + "  - audience: careplan\n    jwks_file: council.json\n",
			wantErr: "line 5: issuers[1]: issuer is required",
		},
		{
			name:    "audience missing",
			yaml:    "issuers:\n  - issuer: https://identity.nhs.example\n    jwks_file: nhs.json\n",
			wantErr: "line 2: " + nhsName + "audience is required",
		},
		{
			name:    "issuer listed twice",
			yaml:    nhsURL + "  - issuer: https://identity.nhs.example\n    audience: careplan\n    jwks_file: nhs.json\n",
			wantErr: "line 5: issuers[1] (https://identity.nhs.example): issuer already listed at line 2",
		},
		{
			name:    "negative interval",
			yaml:    nhsURL + "    min_refresh_interval: -1m\n",
			wantErr: "line 5: " + nhsName + "min_refresh_interval is negative",
		},
		{
			name:    "interval not a duration",
			yaml:    nhsURL + "    refresh_interval: hourly\n",
			wantErr: "line 5: cannot unmarshal !!str `hourly` into time.Duration",
		},
		{
			name:    "no issuers",
			yaml:    "allowed_orgs: [RXA]\n",
			wantErr: "no issuers listed",
		},
		{
			name:    "empty file",
			yaml:    "",
			wantErr: "empty file",
		},
		{
			name:    "not YAML",
			yaml:    "issuers: [\n",
			wantErr: "yaml: line 1: did not find expected node content",
		},
		{
			name:    "two documents",
			yaml:    nhsURL + "---\n" + nhsURL,
			wantErr: "more than one YAML document",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "trust.yaml", tc.yaml)
			f, err := trustconfig.Load(path)
			if err == nil {
				t.Fatalf("Load = %+v, want error %q", f, tc.wantErr)
			}
			prefix := "trustconfig: " + path + ": "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.HasPrefix(strings.TrimPrefix(err.Error(), prefix), tc.wantErr) {
				t.Errorf("Load error =\n%q\nwant\n%q", err, prefix+tc.wantErr)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := trustconfig.Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load error = %v, want a missing-file error", err)
	}
}

func TestApplyFlags(t *testing.T) {
	// fromFile is what a loaded file might hold; each case gets a fresh one.
	fromFile := func() *trustconfig.File {
		return &trustconfig.File{
			Issuers: []trustconfig.Issuer{{
				Issuer:   nhsIssuer,
				Audience: "careplan-nhs",
				JWKSURL:  nhsIssuer + "/jwks.json",
				Claims:   trustconfig.Claims{Org: "nhsid_org"},
				RoleMap:  map[string][]string{"R8000": {auth.RoleRead}},
			}},
			AllowedOrgs: []string{"RXA"},
		}
	}
	edited := func(edit func(f *trustconfig.File)) *trustconfig.File {
		f := fromFile()
		edit(f)
		return f
	}
	council := trustconfig.Issuer{Issuer: councilIssuer, Audience: trustconfig.DefaultAudience, JWKSFile: "council.json"}

	tests := []struct {
		name    string
		file    *trustconfig.File
		flags   trustconfig.Flags
		want    *trustconfig.File
		wantErr string
	}{
		{
			name: "no flags change nothing",
			file: fromFile(),
			want: fromFile(),
		},
		{
			name:  "flags alone make the one issuer, with the default audience",
			file:  &trustconfig.File{},
			flags: trustconfig.Flags{Issuer: councilIssuer, JWKS: "council.json"},
			want:  &trustconfig.File{Issuers: []trustconfig.Issuer{council}},
		},
		{
			name:  "flags naming another issuer add it beside the file's",
			file:  fromFile(),
			flags: trustconfig.Flags{Issuer: councilIssuer, JWKS: "council.json", Audience: "careplan-council"},
			want: edited(func(f *trustconfig.File) {
				c := council
				c.Audience = "careplan-council"
				f.Issuers = append(f.Issuers, c)
			}),
		},
		{
			name:  "--jwks file replaces a file issuer's URL; audience and mappings stay",
			file:  fromFile(),
			flags: trustconfig.Flags{Issuer: nhsIssuer, JWKS: "/etc/careplan/nhs.json"},
			want: edited(func(f *trustconfig.File) {
				f.Issuers[0].JWKSURL, f.Issuers[0].JWKSFile = "", "/etc/careplan/nhs.json"
			}),
		},
		{
			name:  "--jwks URL replaces a file issuer's URL",
			file:  fromFile(),
			flags: trustconfig.Flags{Issuer: nhsIssuer, JWKS: "https://keys.nhs.example/jwks.json"},
			want:  edited(func(f *trustconfig.File) { f.Issuers[0].JWKSURL = "https://keys.nhs.example/jwks.json" }),
		},
		{
			name:  "--audience alone replaces a file issuer's audience",
			file:  fromFile(),
			flags: trustconfig.Flags{Issuer: nhsIssuer, Audience: "careplan"},
			want:  edited(func(f *trustconfig.File) { f.Issuers[0].Audience = "careplan" }),
		},
		{
			name:    "a new issuer needs --jwks",
			file:    fromFile(),
			flags:   trustconfig.Flags{Issuer: councilIssuer},
			wantErr: `trustconfig: --issuer "https://login.council.example" is not in the configuration file, so --jwks is required`,
		},
		{
			name:    "--jwks without --issuer",
			file:    fromFile(),
			flags:   trustconfig.Flags{JWKS: "council.json"},
			wantErr: "trustconfig: --jwks and --audience need --issuer",
		},
		{
			name:    "--audience without --issuer",
			file:    fromFile(),
			flags:   trustconfig.Flags{Audience: "careplan"},
			wantErr: "trustconfig: --jwks and --audience need --issuer",
		},
		{
			name:    "http --jwks",
			file:    &trustconfig.File{},
			flags:   trustconfig.Flags{Issuer: councilIssuer, JWKS: "http://login.council.example/jwks.json"},
			wantErr: `trustconfig: --jwks: JWKS URL "http://login.council.example/jwks.json" must use https`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.file.ApplyFlags(tc.flags)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("ApplyFlags error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ApplyFlags: %v", err)
			}
			if !reflect.DeepEqual(tc.file, tc.want) {
				t.Errorf("after ApplyFlags =\n%+v\nwant\n%+v", tc.file, tc.want)
			}
		})
	}
}

func TestVerifierConfig(t *testing.T) {
	dir := t.TempDir()
	jwks := `{"keys":[]}`
	writeFile(t, dir, "council.json", jwks)
	writeFile(t, dir, "empty.json", "")
	f := &trustconfig.File{
		Issuers: []trustconfig.Issuer{
			{
				Issuer: nhsIssuer, Audience: "careplan", JWKSURL: nhsIssuer + "/jwks.json",
				RefreshInterval: time.Hour, MinRefreshInterval: time.Minute,
				Claims:     trustconfig.Claims{Org: "nhsid_org", OrgType: "org_kind", Roles: "nhsid_roles"},
				RoleMap:    map[string][]string{"R8000": {auth.RoleRead}},
				OrgTypeMap: map[string]string{"NHS Trust": "nhs"},
			},
			{Issuer: councilIssuer, Audience: "careplan", JWKSFile: filepath.Join(dir, "council.json")},
		},
		AllowedOrgs: []string{"RXA", "C123"},
	}
	got, err := f.VerifierConfig()
	if err != nil {
		t.Fatalf("VerifierConfig: %v", err)
	}
	want := auth.Config{
		Issuers: []auth.IssuerConfig{
			{
				Issuer: nhsIssuer, Audience: "careplan", JWKSURL: nhsIssuer + "/jwks.json",
				RefreshInterval: time.Hour, MinRefreshInterval: time.Minute,
				Claims:     auth.ClaimNames{Org: "nhsid_org", OrgType: "org_kind", Roles: "nhsid_roles"},
				RoleMap:    map[string][]string{"R8000": {auth.RoleRead}},
				OrgTypeMap: map[string]string{"NHS Trust": "nhs"},
			},
			{Issuer: councilIssuer, Audience: "careplan", JWKS: []byte(jwks)},
		},
		AllowedOrgs: []string{"RXA", "C123"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("VerifierConfig =\n%+v\nwant\n%+v", got, want)
	}

	for _, tc := range []struct{ name, file string }{
		{"missing JWKS file", "absent.json"},
		{"empty JWKS file", "empty.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file
			f := &trustconfig.File{Issuers: []trustconfig.Issuer{{Issuer: councilIssuer, Audience: "careplan", JWKSFile: filepath.Join(dir, file)}}}
			if _, err := f.VerifierConfig(); err == nil || !strings.Contains(err.Error(), file) {
				t.Errorf("VerifierConfig error = %v, want one naming %s", err, file)
			}
		})
	}
}
