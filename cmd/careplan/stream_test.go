package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// cancelAfter is a stdout that cancels the command's context once n lines
// have been printed, as an operator's Ctrl-C would.
type cancelAfter struct {
	bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if bytes.Count(w.Bytes(), []byte("\n")) >= w.n {
		w.cancel()
	}
	return n, err
}

// watchLines runs `careplan watch args...` until it has printed n lines and
// returns the revisions printed, checking each line is one protojson event.
func watchLines(t *testing.T, s *testserver.Server, n int, args ...string) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	out := &cancelAfter{n: n, cancel: cancel}
	r := cliTo(ctx, t, s, out, "", append([]string{"watch"}, args...)...)
	if r.code != 0 || ctx.Err() != context.Canceled {
		t.Fatalf("watch %v: exit %d (%v), stderr %s; want 0 once interrupted after %d lines", args, r.code, ctx.Err(), r.stderr, n)
	}
	var revs []int64
	for line := range strings.Lines(r.stdout) {
		ev := &careplanv1.CarePlanEvent{}
		if err := protojson.Unmarshal([]byte(line), ev); err != nil || !strings.Contains(line, `"nhs_number"`) {
			t.Fatalf("line %q is not a protojson event with proto names: %v", line, err)
		}
		revs = append(revs, ev.GetRevision())
	}
	return revs
}

func wantRevisions(t *testing.T, got []int64, from, to int64) {
	t.Helper()
	var want []int64
	for r := from; r <= to; r++ {
		want = append(want, r)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("revisions printed %v, want %v", got, want)
	}
}

func wantState(t *testing.T, path string, rev int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(rev) {
		t.Fatalf("state file holds %q (%v), want %d", b, err, rev)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", info.Mode().Perm())
	}
	wantNoTempFiles(t, filepath.Dir(path))
}

// wantNoTempFiles fails if an atomic write left its temporary file behind.
func wantNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestWatchStateResumes(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client(t, testserver.TrustUser)
	nhs := testserver.CreatePlan(t, c, 1).GetNhsNumber()
	for i := range 4 {
		bump(t, c, nhs, fmt.Sprintf("update %d", i))
	}
	as(t, s, testserver.Council)
	state := filepath.Join(t.TempDir(), "watch.rev")

	wantRevisions(t, watchLines(t, s, 3, "--state", state), 1, 3)
	wantState(t, state, 3)

	bump(t, c, nhs, "while no one watched")
	bump(t, c, nhs, "still no one")
	wantRevisions(t, watchLines(t, s, 4, "--state", state), 4, 7)
	wantState(t, state, 7)

	wantRevisions(t, watchLines(t, s, 2, "--state", state, "--from", "5"), 6, 7)
	wantState(t, state, 7)

	writeFile(t, state, "not a revision")
	if e := decodeError(t, cli(t, s, "", "watch", "--state", state)); e.Code != "INVALID_ARGUMENT" {
		t.Errorf("watch with a corrupt state file: %+v, want INVALID_ARGUMENT", e)
	}
}

func TestWatchRefused(t *testing.T) {
	s := testserver.Start(t)
	as(t, s, testserver.Caller{Subject: "ig-1", Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleAuditRead}})
	r := cli(t, s, "", "watch")
	if e := decodeError(t, r); r.code != 1 || e.Code != "PERMISSION_DENIED" || e.Reason != "MISSING_ROLE" {
		t.Fatalf("watch without careplan:read: exit %d, %+v; want 1 and PERMISSION_DENIED", r.code, e)
	}
}

func TestAudit(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client(t, testserver.TrustUser)
	a := testserver.CreatePlan(t, c, 1).GetNhsNumber()
	testserver.CreatePlan(t, c, 2)
	if _, err := c.Get(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	as(t, s, testserver.Caller{Subject: "ig-1", Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleAuditRead}})

	audit := func(args ...string) []*careplanv1.AuditEvent {
		t.Helper()
		r := cli(t, s, "", append([]string{"audit"}, args...)...)
		if r.code != 0 {
			t.Fatalf("audit %v: exit %d, %s", args, r.code, r.stderr)
		}
		var out []*careplanv1.AuditEvent
		for line := range strings.Lines(r.stdout) {
			ev := &careplanv1.AuditEvent{}
			if err := protojson.Unmarshal([]byte(line), ev); err != nil || !strings.Contains(line, `"nhs_number"`) {
				t.Fatalf("line %q is not a protojson audit event with proto names: %v", line, err)
			}
			out = append(out, ev)
		}
		return out
	}
	all := audit()
	if len(all) != 3 {
		t.Fatalf("audit printed %d events, want 3 (two creates, one read)", len(all))
	}
	if got := audit("--nhs", a); len(got) != 2 || got[0].GetNhsNumber() != a || got[1].GetMethod() != careplanv1.CarePlanService_GetCarePlan_FullMethodName {
		t.Errorf("audit --nhs: %v, want the create and read of plan a", got)
	}
	since := all[1].GetTime().AsTime().Format(time.RFC3339Nano)
	until := all[2].GetTime().AsTime().Format(time.RFC3339Nano)
	if got := audit("--since", since, "--until", until); len(got) != 1 || !proto.Equal(got[0], all[1]) {
		t.Errorf("audit --since --until: %v, want the second event only", got)
	}
}

func TestBackup(t *testing.T) {
	s := testserver.Start(t)
	nhs := testserver.CreatePlan(t, s.Client(t, testserver.TrustUser), 1).GetNhsNumber()
	dir := t.TempDir()
	file := filepath.Join(dir, "careplan-backup.db")
	writeFile(t, file, "an older backup")

	// A refused backup leaves the older file alone.
	as(t, s, testserver.TrustUser)
	if e := decodeError(t, cli(t, s, "", "backup", "-o", file)); e.Code != "PERMISSION_DENIED" {
		t.Fatalf("backup without careplan:admin: %+v, want PERMISSION_DENIED", e)
	}
	if b, _ := os.ReadFile(file); string(b) != "an older backup" {
		t.Fatal("a failed backup changed the existing file")
	}
	wantNoTempFiles(t, dir)

	as(t, s, testserver.Caller{Subject: "ops-1", Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleAdmin}})
	r := cli(t, s, "", "backup", "-o", file)
	if r.code != 0 {
		t.Fatalf("backup: exit %d, %s", r.code, r.stderr)
	}
	var summary struct {
		File  string
		Bytes int64
	}
	if err := json.Unmarshal([]byte(r.stdout), &summary); err != nil || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("stdout %q is not one JSON line: %v", r.stdout, err)
	}
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if summary.File != file || summary.Bytes != info.Size() || info.Mode().Perm() != 0o600 {
		t.Fatalf("summary %+v, file of %d bytes mode %v; want the file, its size, 0600", summary, info.Size(), info.Mode().Perm())
	}
	wantNoTempFiles(t, dir)

	db, err := bolt.Open(file, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("backup does not open with bbolt: %v", err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("plans")); b == nil || b.Get([]byte(nhs)) == nil {
			return errors.New("the plan is not in the backup")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
