package server_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/internal/fixture"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store/boltstore"
)

// smallDisk mounts a tmpfs of size bytes, or skips the test where mounting
// is not allowed (not root).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s); the full-disk test needs root", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestFullDisk fills a small filesystem: writes fail with UNAVAILABLE and
// leave nothing half-written, health reports NOT_SERVING, and once space is
// freed the server recovers by itself.
func TestFullDisk(t *testing.T) {
	disk := smallDisk(t, "6m")
	ballast := filepath.Join(disk, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	s := testserver.StartWith(t, testserver.Settings{
		Path: filepath.Join(disk, "careplan.db"),
		// A small audit journal: the default (4 MiB) would not fit beside
		// the ballast.
		Store: boltstore.Options{ProbeInterval: 50 * time.Millisecond, JournalBytes: 256 << 10},
	})
	e := &env{Server: s, t: t, plans: careplanv1.NewCarePlanServiceClient(s.Conn)}
	health := healthpb.NewHealthClient(s.Conn)

	// Write until writes keep failing: a failed commit can leave pages the
	// next, smaller write reuses, so one failure is not yet a full disk.
	var acked []*careplanv1.CarePlan
	var failedNHS string
	failures := 0
	for i := 0; i < 400 && failures < 3; i++ {
		p := fixture.TrustPlan(fixture.NHSNumber(1000 + i))
		for range 6 { // ~60 KB a plan, within the free-text bound per field
			p.Goals = append(p.Goals, &careplanv1.Goal{Description: strings.Repeat("x", 9999), Status: careplanv1.Goal_STATUS_ACTIVE, Owner: fixture.Trust()})
		}
		out, err := e.plans.CreateCarePlan(e.as(trustUser), &careplanv1.CreateCarePlanRequest{CarePlan: p})
		if err != nil {
			info, _ := wantCode(t, err, codes.Unavailable)
			if info.GetReason() != "STORE_UNAVAILABLE" {
				t.Fatalf("reason = %q", info.GetReason())
			}
			if strings.Contains(err.Error(), disk) {
				t.Fatalf("the error shows the caller a server path: %v", err)
			}
			if failedNHS == "" {
				failedNHS = p.GetNhsNumber()
			}
			failures++
			continue
		}
		failures = 0
		acked = append(acked, out)
	}
	if failures < 3 {
		t.Fatal("the disk never filled")
	}
	t.Logf("disk full after %d acknowledged creates", len(acked))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health while the disk is full = %v, %v; want NOT_SERVING", resp, err)
	}
	// Reads are still answered while their audit events fit in the
	// preallocated journal; once it is full and cannot be moved into the
	// data file, they fail with UNAVAILABLE. The audit log lists every
	// answered read, from memory while the checkpoint fails.
	read := acked[0].GetNhsNumber()
	reads := 0
	for range 3000 {
		_, err := e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: read})
		if err != nil {
			wantCode(t, err, codes.Unavailable)
			break
		}
		reads++
	}
	t.Logf("%d reads answered on the full disk", reads)
	n := 0
	// The whole log, not one plan's: listing a plan's events is itself an
	// audited read, which the full journal would refuse.
	req := &careplanv1.ListAuditEventsRequest{PageSize: 1000}
	for {
		resp, err := careplanv1.NewAuditServiceClient(s.Conn).ListAuditEvents(e.as(trustIG), req)
		if err != nil {
			t.Fatalf("ListAuditEvents while the disk is full: %v", err)
		}
		for _, ev := range resp.GetAuditEvents() {
			if ev.GetMethod() == careplanv1.CarePlanService_GetCarePlan_FullMethodName && ev.GetNhsNumber() == read && ev.GetOutcome() == "OK" {
				n++
			}
		}
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if n != reads {
		t.Fatalf("audit log while the disk is full lists %d of the %d reads", n, reads)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	// Its own deadline: the reads above take most of 20 s on a busy CI
	// machine, and must not eat into the time allowed for recovery.
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatal("the server did not recover after space was freed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nothing half-written: the failed create is absent, every acknowledged
	// one is whole, and new writes work.
	_, err := e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: failedNHS})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("the failed create: %v, want NOT_FOUND", err)
	}
	for _, p := range acked {
		got, err := e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: p.GetNhsNumber()})
		if err != nil || got.GetEtag() != p.GetEtag() {
			t.Fatalf("acknowledged plan after recovery: %v", err)
		}
	}
	e.create(trustUser, fixture.TrustPlan(failedNHS))
	s.Stop()
	if n, err := boltstore.VerifyAudit(s.Path); err != nil {
		t.Fatalf("audit chain after a full disk: %v (%d events)", err, n)
	}
}
