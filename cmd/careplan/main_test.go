package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/devmode"
	"github.com/careplan/careplan/internal/fixture"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

type result struct {
	code           int
	stdout, stderr string
}

// cli runs the command against s (nil: no server) with the given stdin.
func cli(t *testing.T, s *testserver.Server, stdin string, args ...string) result {
	t.Helper()
	var stdout bytes.Buffer
	return cliTo(t.Context(), t, s, &stdout, stdin, args...)
}

// output is a stdout a test can read back, such as a bytes.Buffer.
type output interface {
	io.Writer
	String() string
}

// cliTo is cli with a context and a stdout of the test's choosing.
func cliTo(ctx context.Context, t *testing.T, s *testserver.Server, stdout output, stdin string, args ...string) result {
	t.Helper()
	if s != nil {
		t.Setenv("CAREPLAN_ADDR", s.Addr)
	}
	var stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

// as makes the commands that follow run with who's token.
func as(t *testing.T, s *testserver.Server, who testserver.Caller) {
	t.Setenv("CAREPLAN_TOKEN", s.Token(who))
}

// bump stores a new version of the plan whatever its etag.
func bump(t *testing.T, c *client.Client, nhs, text string) *careplanv1.CarePlan {
	t.Helper()
	stored, err := c.Modify(t.Context(), nhs, func(p *careplanv1.CarePlan) error {
		p.WhatMatters = text
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func decodeError(t *testing.T, r result) errorJSON {
	t.Helper()
	var e errorJSON
	if err := json.Unmarshal([]byte(r.stderr), &e); err != nil {
		t.Fatalf("stderr %q is not one JSON object: %v", r.stderr, err)
	}
	return e
}

// TestGetPrintsPlanWithProtoNames reads as a break-glass caller, which the
// server allows only with the --reason sent and the token from
// CAREPLAN_TOKEN.
func TestGetPrintsPlanWithProtoNames(t *testing.T) {
	s := testserver.Start(t)
	stored := testserver.CreatePlan(t, s.Client(t, testserver.TrustUser), 1)
	nhs := stored.GetNhsNumber()
	as(t, s, testserver.BreakGlass)

	if e := decodeError(t, cli(t, s, "", "get", nhs)); e.Code != "PERMISSION_DENIED" {
		t.Fatalf("break-glass get without --reason: %+v, want PERMISSION_DENIED", e)
	}
	r := cli(t, s, "", "--reason", "Seen in A&E, unconscious", "get", nhs)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	for _, key := range []string{`"nhs_number"`, `"what_matters"`, `"given_name"`} {
		if !strings.Contains(r.stdout, key) {
			t.Errorf("output lacks %s:\n%s", key, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "nhsNumber") {
		t.Errorf("output uses JSON names:\n%s", r.stdout)
	}
	got := &careplanv1.CarePlan{}
	if err := protojson.Unmarshal([]byte(r.stdout), got); err != nil || !proto.Equal(got, stored) {
		t.Errorf("output parses to %v (%v), want %v", got, err, stored)
	}
}

func TestErrorsPrintJSON(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client(t, testserver.TrustUser)
	stale := testserver.CreatePlan(t, c, 1)
	current := bump(t, c, stale.GetNhsNumber(), "A newer version.")
	staleJSON, err := protojson.Marshal(stale)
	if err != nil {
		t.Fatal(err)
	}
	as(t, s, testserver.TrustUser)

	tests := []struct {
		name      string
		stdin     string
		args      []string
		want      errorJSON
		wantField string // one of the fields named, if any
	}{
		{
			name: "not found",
			args: []string{"get", fixture.NHSNumber(2)},
			want: errorJSON{Code: "NOT_FOUND", Reason: "PLAN_NOT_FOUND"},
		},
		{
			name:  "stale etag",
			stdin: string(staleJSON),
			args:  []string{"update", "-f", "-", "--mask", "what_matters"},
			want:  errorJSON{Code: "ABORTED", Reason: "ETAG_MISMATCH", CurrentEtag: current.GetEtag()},
		},
		{
			name:      "field errors",
			stdin:     `{"what_matters": "no nhs number"}`,
			args:      []string{"create", "-f", "-"},
			want:      errorJSON{Code: "INVALID_ARGUMENT", Reason: "INVALID_ARGUMENT"},
			wantField: "care_plan.nhs_number",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, s, tt.stdin, tt.args...)
			if r.code != 1 || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q; want 1 and nothing", r.code, r.stdout)
			}
			got := decodeError(t, r)
			if got.Code != tt.want.Code || got.Reason != tt.want.Reason || got.CurrentEtag != tt.want.CurrentEtag || got.Message == "" {
				t.Errorf("stderr = %+v, want %+v with a message", got, tt.want)
			}
			if got.Fields == nil || (tt.wantField == "") != (len(got.Fields) == 0) || (tt.wantField != "" && !slices.Contains(got.Fields, tt.wantField)) {
				t.Errorf("fields = %q, want a list naming %q", got.Fields, tt.wantField)
			}
		})
	}
}

func TestCreateUpdateHistory(t *testing.T) {
	s := testserver.Start(t)
	as(t, s, testserver.TrustUser)
	nhs := fixture.NHSNumber(1)
	planJSON, err := protojson.Marshal(fixture.TrustPlan(nhs))
	if err != nil {
		t.Fatal(err)
	}
	if r := cli(t, s, string(planJSON), "create", "-f", "-", "--request-id", "r1"); r.code != 0 {
		t.Fatalf("create: exit %d, %s", r.code, r.stderr)
	}
	// A retry with the same request id returns the first result.
	if r := cli(t, s, string(planJSON), "create", "-f", "-", "--request-id", "r1"); r.code != 0 {
		t.Fatalf("create retried: exit %d, %s", r.code, r.stderr)
	}

	// Edit what get printed and send it back, as a user would. Only the
	// --mask paths may change: the family name edit must not be stored.
	r := cli(t, s, "", "get", nhs)
	edited := strings.Replace(r.stdout, "Keeping my garden and seeing my grandchildren.", "Back to the allotment.", 1)
	edited = strings.Replace(edited, `"Example"`, `"Renamed"`, 1)
	file := filepath.Join(t.TempDir(), "plan.json")
	writeFile(t, file, edited)
	if r := cli(t, s, "", "update", "-f", file, "--mask", "what_matters, person.given_name"); r.code != 0 {
		t.Fatalf("update: exit %d, %s", r.code, r.stderr)
	}

	r = cli(t, s, "", "history", nhs)
	if r.code != 0 {
		t.Fatalf("history: exit %d, %s", r.code, r.stderr)
	}
	var history careplanv1.ListCarePlanVersionsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &history); err != nil {
		t.Fatal(err)
	}
	v := history.GetVersions()
	if len(v) != 2 || v[1].GetWhatMatters() != "Back to the allotment." {
		t.Fatalf("history = %v, want two versions, the second edited", v)
	}
	if v[1].GetPerson().GetFamilyName() != "Example" || v[1].GetPerson().GetGivenName() != "Ada" {
		t.Errorf("person = %v: the update changed a field outside --mask, or cleared one inside it", v[1].GetPerson())
	}
}

func TestToken(t *testing.T) {
	data := filepath.Join(t.TempDir(), "careplan.db")
	r := cli(t, nil, "", "token", "nhs", "--data", data)
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
	}
	parts := strings.Split(strings.TrimSpace(r.stdout), ".")
	if len(parts) != 3 {
		t.Fatalf("output %q is not a JWT", r.stdout)
	}
	header, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(header, &h); err != nil {
		t.Fatal(err)
	}
	signer, err := devmode.Signer(data) // loads the key the command created
	if err != nil {
		t.Fatal(err)
	}
	if h.Kid == "" || h.Kid != signer.KID() {
		t.Errorf("token kid = %q, want the key file's %q", h.Kid, signer.KID())
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "no command given"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"get without NHS", []string{"get"}, "get takes one NHS number"},
		{"create without file", []string{"create"}, "create takes -f FILE"},
		{"unknown flag", []string{"get", "--colour", "9434765919"}, "flag provided but not defined"},
		{"unknown caller", []string{"token", "gp", "--data", filepath.Join(t.TempDir(), "x.db")}, `unknown dev caller "gp"`},
		{"watch with an argument", []string{"watch", "9434765919"}, "watch takes no arguments"},
		{"watch bad from", []string{"watch", "--from", "soon"}, `invalid value "soon" for flag -from`},
		{"audit bad time", []string{"audit", "--since", "yesterday"}, "--since wants an RFC 3339 time"},
		{"backup without file", []string{"backup"}, "backup takes -o FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, nil, "", tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "usage: careplan") {
				t.Errorf("exit %d, stderr %q; want 2 with %q and the usage", r.code, r.stderr, tt.want)
			}
		})
	}
	r := cli(t, nil, "", "-h")
	if r.code != 0 || !strings.Contains(r.stdout, "usage: careplan") {
		t.Errorf("-h: exit %d, stdout %q; want 0 and the usage", r.code, r.stdout)
	}
	for _, c := range commands {
		if !strings.Contains(r.stdout, "  "+c.name+" ") {
			t.Errorf("usage does not list %s", c.name)
		}
	}
}

func TestUnreadableFile(t *testing.T) {
	r := cli(t, nil, "", "create", "-f", filepath.Join(t.TempDir(), "missing.json"))
	if e := decodeError(t, r); r.code != 1 || e.Code != "INVALID_ARGUMENT" || !strings.Contains(e.Message, "missing.json") {
		t.Errorf("exit %d, error %+v; want 1 and INVALID_ARGUMENT naming the file", r.code, e)
	}
}

func TestCanceled(t *testing.T) {
	s := testserver.Start(t)
	as(t, s, testserver.TrustUser)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := cliTo(ctx, t, s, &bytes.Buffer{}, "", "get", fixture.NHSNumber(1))
	if r.code != 1 || !strings.Contains(r.stderr, `"CANCELLED"`) {
		t.Errorf("exit %d, stderr %q; want 1 and CANCELLED", r.code, r.stderr)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
