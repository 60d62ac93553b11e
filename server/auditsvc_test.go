package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

var (
	councilIG = caller{Subject: "ig-officer", Org: "C123", OrgType: "council", Roles: []string{auth.RoleAuditRead}}
	trustIG   = caller{Subject: "ig-lead", Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleAuditRead}}
)

func (e *env) listAudit(c caller, req *careplanv1.ListAuditEventsRequest) []*careplanv1.AuditEvent {
	e.t.Helper()
	audit := careplanv1.NewAuditServiceClient(e.Conn)
	var out []*careplanv1.AuditEvent
	req.PageSize = 2 // small pages exercise the tokens
	for range 100 {
		resp, err := audit.ListAuditEvents(e.as(c), req)
		if err != nil {
			e.t.Fatalf("ListAuditEvents: %v", err)
		}
		out = append(out, resp.GetAuditEvents()...)
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
	e.t.Fatal("audit pages did not end")
	return nil
}

func TestListAuditEvents(t *testing.T) {
	e := newEnv(t)
	shared := fixture.NHSNumber(50)
	e.create(trustUser, fixture.TrustPlan(shared))
	trustOnly := fixture.TrustPlan(fixture.NHSNumber(51))
	trustOnly.Team, trustOnly.Goals = trustOnly.Team[:1], trustOnly.Goals[:1]
	e.create(trustUser, trustOnly)
	// A council user is refused the trust-only plan: that denial is the
	// council's own event.
	_, err := e.plans.GetCarePlan(e.as(council), &careplanv1.GetCarePlanRequest{NhsNumber: trustOnly.GetNhsNumber()})
	wantCode(t, err, codes.PermissionDenied)
	if _, err := e.plans.GetCarePlan(e.as(council), &careplanv1.GetCarePlanRequest{NhsNumber: shared}); err != nil {
		t.Fatal(err)
	}

	// The trust sees all four events.
	all := e.listAudit(trustIG, &careplanv1.ListAuditEventsRequest{})
	if len(all) != 4 {
		t.Fatalf("trust sees %d events, want 4", len(all))
	}
	for i, ev := range all {
		if ev.GetSequence() != int64(i+1) {
			t.Fatalf("events out of order: %v", ev.GetSequence())
		}
	}
	denied := all[2]
	if denied.GetOutcome() != "PERMISSION_DENIED" || denied.GetSubject() != "sw-1" || denied.GetOrgCode() != "C123" ||
		denied.GetOrgType() != careplanv1.Organisation_TYPE_COUNCIL || denied.GetMethod() != careplanv1.CarePlanService_GetCarePlan_FullMethodName ||
		denied.GetNhsNumber() != trustOnly.GetNhsNumber() || denied.GetTime() == nil || len(denied.GetRoles()) != 2 {
		t.Fatalf("denied read audit event = %v", denied)
	}

	// The council sees events on the shared plan and its own users' events,
	// but not the trust's create of the plan it has no part in.
	got := e.listAudit(councilIG, &careplanv1.ListAuditEventsRequest{})
	if len(got) != 3 {
		t.Fatalf("council sees %d events, want 3", len(got))
	}
	for _, ev := range got {
		if ev.GetNhsNumber() == trustOnly.GetNhsNumber() && ev.GetOrgCode() != "C123" {
			t.Fatal("council sees the trust's event on a plan it has no part in")
		}
	}
	// Filter by time, then by plan.
	after := e.listAudit(trustIG, &careplanv1.ListAuditEventsRequest{StartTime: all[2].GetTime()})
	if len(after) != 2 || after[0].GetSequence() != 3 {
		t.Fatalf("events from the third one's time = %d", len(after))
	}
	before := e.listAudit(trustIG, &careplanv1.ListAuditEventsRequest{EndTime: all[1].GetTime()})
	if len(before) != 1 {
		t.Fatalf("events before the second one's time = %d", len(before))
	}
	if got := e.listAudit(trustIG, &careplanv1.ListAuditEventsRequest{NhsNumber: shared}); len(got) != 2 {
		t.Fatalf("events for the shared plan = %d, want 2", len(got))
	}
	// Reading a plan's audit trail names the plan, so it is audited too.
	if got := e.auditEvents(shared); got[len(got)-1].GetMethod() != careplanv1.AuditService_ListAuditEvents_FullMethodName {
		t.Fatal("reading a plan's audit events was not itself audited")
	}
}

func TestListAuditEventsErrors(t *testing.T) {
	e := newEnv(t)
	audit := careplanv1.NewAuditServiceClient(e.Conn)
	_, err := audit.ListAuditEvents(e.as(trustUser), &careplanv1.ListAuditEventsRequest{})
	info, _ := wantCode(t, err, codes.PermissionDenied)
	if info.GetReason() != "MISSING_ROLE" {
		t.Fatalf("reason = %q", info.GetReason())
	}
	_, err = audit.ListAuditEvents(e.as(trustIG), &careplanv1.ListAuditEventsRequest{
		StartTime: timestamppb.Now(), EndTime: &timestamppb.Timestamp{Seconds: 1},
	})
	_, fields := wantCode(t, err, codes.InvalidArgument)
	if len(fields) != 1 || fields[0] != "end_time" {
		t.Fatalf("fields = %v", fields)
	}
	_, err = audit.ListAuditEvents(e.as(trustIG), &careplanv1.ListAuditEventsRequest{NhsNumber: "9434765918"})
	wantCode(t, err, codes.InvalidArgument)
}
