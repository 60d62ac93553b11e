package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/client/clienttest"
	"github.com/careplan/careplan/internal/devmode"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

const nhs = "9434765919"

type result struct {
	code           int
	stdout, stderr string
}

// cli runs the command against srv with the given stdin.
func cli(t *testing.T, srv *clienttest.Server, stdin string, args ...string) result {
	t.Helper()
	if srv != nil {
		t.Setenv("CAREPLAN_ADDR", srv.Addr)
	}
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code, stdout.String(), stderr.String()}
}

func samplePlan() *careplanv1.CarePlan {
	return &careplanv1.CarePlan{
		NhsNumber:   nhs,
		Person:      &careplanv1.Person{GivenName: "Ada", FamilyName: "Example", BirthDate: "1941-03-02"},
		Status:      careplanv1.CarePlan_STATUS_ACTIVE,
		WhatMatters: "Staying at home with my cat.",
	}
}

func decodeError(t *testing.T, r result) errorJSON {
	t.Helper()
	var e errorJSON
	if err := json.Unmarshal([]byte(r.stderr), &e); err != nil {
		t.Fatalf("stderr %q is not one JSON object: %v", r.stderr, err)
	}
	return e
}

func TestGetPrintsPlanWithProtoNames(t *testing.T) {
	srv := clienttest.Start(t)
	stored := srv.Put(samplePlan())
	t.Setenv("CAREPLAN_TOKEN", "tok")

	r := cli(t, srv, "", "--reason", "Seen in A&E, unconscious", "get", nhs)
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
	md := srv.Calls()[0].Metadata
	if !slices.Equal(md.Get("authorization"), []string{"Bearer tok"}) || !slices.Equal(md.Get("x-access-reason"), []string{"Seen in A&E, unconscious"}) {
		t.Errorf("metadata = %v, want the token from CAREPLAN_TOKEN and the --reason", md)
	}
}

func TestErrorsPrintJSON(t *testing.T) {
	srv := clienttest.Start(t)
	stale := srv.Put(samplePlan())
	current := srv.Put(samplePlan())
	staleJSON, err := protojson.Marshal(stale)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		stdin string
		args  []string
		want  errorJSON
	}{
		{
			name: "not found",
			args: []string{"get", "9434765918"},
			want: errorJSON{Code: "NOT_FOUND", Reason: "PLAN_NOT_FOUND", Message: "care plan not found", Fields: []string{}},
		},
		{
			name:  "stale etag",
			stdin: string(staleJSON),
			args:  []string{"update", "-f", "-", "--mask", "what_matters"},
			want:  errorJSON{Code: "ABORTED", Reason: "ETAG_MISMATCH", Message: "etag does not match the current version", Fields: []string{}, CurrentEtag: current.GetEtag()},
		},
		{
			name:  "field errors",
			stdin: `{"what_matters": "no nhs number"}`,
			args:  []string{"create", "-f", "-"},
			want:  errorJSON{Code: "INVALID_ARGUMENT", Reason: "INVALID_ARGUMENT", Message: "invalid care plan", Fields: []string{"care_plan.nhs_number"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, srv, tt.stdin, tt.args...)
			if r.code != 1 || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q; want 1 and nothing", r.code, r.stdout)
			}
			if got := decodeError(t, r); !equalErrors(got, tt.want) {
				t.Errorf("stderr = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func equalErrors(a, b errorJSON) bool {
	return a.Code == b.Code && a.Reason == b.Reason && a.Message == b.Message &&
		slices.Equal(a.Fields, b.Fields) && a.CurrentEtag == b.CurrentEtag
}

func TestCreateUpdateHistory(t *testing.T) {
	srv := clienttest.Start(t)
	planJSON, err := protojson.Marshal(samplePlan())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "plan.json")
	if r := cli(t, srv, string(planJSON), "create", "-f", "-", "--request-id", "r1"); r.code != 0 {
		t.Fatalf("create: exit %d, %s", r.code, r.stderr)
	}

	// Edit what get printed and send it back, as a user would.
	r := cli(t, srv, "", "get", nhs)
	edited := strings.Replace(r.stdout, "Staying at home with my cat.", "Back to the allotment.", 1)
	writeFile(t, file, edited)
	if r := cli(t, srv, "", "update", "-f", file, "--mask", "what_matters, person.given_name"); r.code != 0 {
		t.Fatalf("update: exit %d, %s", r.code, r.stderr)
	}
	var reqs []*careplanv1.UpdateCarePlanRequest
	for _, c := range srv.Calls() {
		if req, ok := c.Request.(*careplanv1.UpdateCarePlanRequest); ok {
			reqs = append(reqs, req)
		}
	}
	if len(reqs) != 1 || !slices.Equal(reqs[0].GetUpdateMask().GetPaths(), []string{"what_matters", "person.given_name"}) {
		t.Fatalf("update requests = %v, want one with the --mask paths", reqs)
	}

	r = cli(t, srv, "", "history", nhs)
	if r.code != 0 {
		t.Fatalf("history: exit %d, %s", r.code, r.stderr)
	}
	var history careplanv1.ListCarePlanVersionsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &history); err != nil {
		t.Fatal(err)
	}
	if v := history.GetVersions(); len(v) != 2 || v[1].GetWhatMatters() != "Back to the allotment." {
		t.Errorf("history = %v, want two versions, the second edited", v)
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
		{"unknown flag", []string{"get", "--colour", nhs}, "flag provided but not defined"},
		{"unknown caller", []string{"token", "gp", "--data", filepath.Join(t.TempDir(), "x.db")}, `unknown dev caller "gp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, nil, "", tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "usage: careplan") {
				t.Errorf("exit %d, stderr %q; want 2 with %q and the usage", r.code, r.stderr, tt.want)
			}
		})
	}
	if r := cli(t, nil, "", "-h"); r.code != 0 || !strings.Contains(r.stdout, "usage: careplan") {
		t.Errorf("-h: exit %d, stdout %q; want 0 and the usage", r.code, r.stdout)
	}
}

func TestUnreadableFile(t *testing.T) {
	r := cli(t, nil, "", "create", "-f", filepath.Join(t.TempDir(), "missing.json"))
	if e := decodeError(t, r); r.code != 1 || e.Code != "INVALID_ARGUMENT" || !strings.Contains(e.Message, "missing.json") {
		t.Errorf("exit %d, error %+v; want 1 and INVALID_ARGUMENT naming the file", r.code, e)
	}
}

func TestCanceled(t *testing.T) {
	srv := clienttest.Start(t)
	t.Setenv("CAREPLAN_ADDR", srv.Addr)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"get", nhs}, nil, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), `"CANCELLED"`) {
		t.Errorf("exit %d, stderr %q; want 1 and CANCELLED", code, stderr.String())
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
