package client_test

import (
	"errors"
	"testing"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// trustIG is the trust's information-governance officer, who may read its
// audit trail and nothing else.
var trustIG = testserver.Caller{Subject: "ig-1", Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleAuditRead}}

// auditEvents lists with filter as c and returns the events.
func auditEvents(t *testing.T, c *client.Client, filter client.AuditFilter) []*careplanv1.AuditEvent {
	t.Helper()
	var out []*careplanv1.AuditEvent
	if err := c.AuditEvents(t.Context(), filter, func(ev *careplanv1.AuditEvent) error {
		out = append(out, ev)
		return nil
	}); err != nil {
		t.Fatalf("AuditEvents(%+v): %v", filter, err)
	}
	return out
}

// TestAuditEvents makes more audit events than the server's largest page
// (100), then lists them whole and filtered.
func TestAuditEvents(t *testing.T) {
	s, tap := start(t)
	trust := s.Client(t, testserver.TrustUser)
	a := testserver.CreatePlan(t, trust, 1).GetNhsNumber()
	b := testserver.CreatePlan(t, trust, 2).GetNhsNumber()
	const reads = 100
	for range reads {
		if _, err := trust.Get(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	ig := s.Client(t, trustIG)

	all := auditEvents(t, ig, client.AuditFilter{})
	if len(all) != reads+2 {
		t.Fatalf("listed %d events, want %d (2 creates, %d reads)", len(all), reads+2, reads)
	}
	for i, ev := range all {
		if ev.GetSequence() != int64(i+1) {
			t.Fatalf("event %d has sequence %d: want every event once, oldest first", i, ev.GetSequence())
		}
	}
	if n := len(tap.callsTo("ListAuditEvents")); n != 2 {
		t.Errorf("server saw %d ListAuditEvents calls, want 2 pages", n)
	}

	t.Run("nhs number", func(t *testing.T) {
		got := auditEvents(t, ig, client.AuditFilter{NhsNumber: b})
		if len(got) != 1 || got[0].GetNhsNumber() != b || got[0].GetMethod() != careplanv1.CarePlanService_CreateCarePlan_FullMethodName {
			t.Fatalf("events for plan b = %v, want its create only", got)
		}
	})
	t.Run("time range", func(t *testing.T) {
		start, end := all[10].GetTime().AsTime(), all[20].GetTime().AsTime()
		got := auditEvents(t, ig, client.AuditFilter{Start: start, End: end})
		if len(got) != 10 || got[0].GetSequence() != 11 || got[9].GetSequence() != 20 {
			t.Fatalf("events in [11th, 21st) = %d, want sequences 11..20", len(got))
		}
	})
	t.Run("fn error stops", func(t *testing.T) {
		stop := errors.New("enough")
		n := 0
		err := ig.AuditEvents(t.Context(), client.AuditFilter{}, func(*careplanv1.AuditEvent) error {
			n++
			if n == 3 {
				return stop
			}
			return nil
		})
		if err != stop || n != 3 {
			t.Fatalf("AuditEvents = %v after %d events, want fn's error after 3", err, n)
		}
	})
	t.Run("needs audit:read", func(t *testing.T) {
		err := trust.AuditEvents(t.Context(), client.AuditFilter{}, func(*careplanv1.AuditEvent) error { return nil })
		if !errors.Is(err, client.ErrPermissionDenied) {
			t.Fatalf("AuditEvents without audit:read = %v, want ErrPermissionDenied", err)
		}
	})
}
