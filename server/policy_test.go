package server_test

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

func TestAccessRules(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(30)
	v1 := e.seed(nhs)
	objecting := fixture.TrustPlan(fixture.NHSNumber(31))
	objecting.SharingObjection = true
	e.create(trustUser, objecting)

	// change returns an update of v1 made by fn, with mask "*".
	change := func(fn func(*careplanv1.CarePlan)) *careplanv1.UpdateCarePlanRequest {
		p := proto.Clone(v1).(*careplanv1.CarePlan)
		fn(p)
		return &careplanv1.UpdateCarePlanRequest{CarePlan: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"*"}}}
	}
	tests := []struct {
		name       string
		call       func() error
		wantReason string
		wantFields []string
	}{
		{"unrelated organisation reads", func() error {
			_, err := e.plans.GetCarePlan(e.as(unrelated), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
			return err
		}, "", nil},
		{"unrelated organisation updates", func() error {
			_, err := e.plans.UpdateCarePlan(e.as(unrelated), change(func(p *careplanv1.CarePlan) { p.WhatMatters = "x" }))
			return err
		}, "", nil},
		{"break-glass without a reason", func() error {
			_, err := e.plans.GetCarePlan(e.as(breakGlass), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
			return err
		}, "", nil},
		{"break-glass with a too-short reason", func() error {
			_, err := e.plans.GetCarePlan(e.as(breakGlass, "x-access-reason", "urgent"), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
			return err
		}, "", nil},
		{"break-glass under a sharing objection", func() error {
			_, err := e.plans.GetCarePlan(e.as(breakGlass, "x-access-reason", "Unconscious in A&E, need care plan"), &careplanv1.GetCarePlanRequest{NhsNumber: objecting.GetNhsNumber()})
			return err
		}, "", nil},
		{"council changes the coordinator", func() error {
			_, err := e.plans.UpdateCarePlan(e.as(council), change(func(p *careplanv1.CarePlan) { p.Coordinator.Name = "Someone Else" }))
			return err
		}, "", []string{"care_plan.coordinator"}},
		{"council changes the team", func() error {
			_, err := e.plans.UpdateCarePlan(e.as(council), change(func(p *careplanv1.CarePlan) { p.Team = p.Team[1:] }))
			return err
		}, "", []string{"care_plan.team"}},
		{"council changes the status", func() error {
			_, err := e.plans.UpdateCarePlan(e.as(council), change(func(p *careplanv1.CarePlan) { p.Status = careplanv1.CarePlan_STATUS_ON_HOLD }))
			return err
		}, "", []string{"care_plan.status"}},
		{"council edits the trust's goal", func() error {
			_, err := e.plans.UpdateCarePlan(e.as(council), change(func(p *careplanv1.CarePlan) { p.Goals[0].Description = "changed by council" }))
			return err
		}, "", nil},
		{"council removes the trust's activity", func() error {
			_, err := e.plans.UpdateCarePlan(e.as(council), change(func(p *careplanv1.CarePlan) { p.Activities = p.Activities[1:] }))
			return err
		}, "", nil},
		{"council sets NHS funding on its activity", func() error {
			_, err := e.plans.UpdateCarePlan(e.as(council), change(func(p *careplanv1.CarePlan) { p.Activities[1].Funding = careplanv1.Activity_FUNDING_NHS }))
			return err
		}, "", nil},
		{"trust sets council funding", func() error {
			_, err := e.plans.UpdateCarePlan(e.as(trustUser), change(func(p *careplanv1.CarePlan) { p.Activities[0].Funding = careplanv1.Activity_FUNDING_COUNCIL }))
			return err
		}, "", nil},
		{"create not naming the caller's organisation", func() error {
			_, err := e.plans.CreateCarePlan(e.as(unrelated), &careplanv1.CreateCarePlanRequest{CarePlan: fixture.TrustPlan(fixture.NHSNumber(32))})
			return err
		}, "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, fields := wantCode(t, tc.call(), codes.PermissionDenied)
			if info.GetReason() == "" {
				t.Fatal("no ErrorInfo reason")
			}
			for _, f := range tc.wantFields {
				if !slices.Contains(fields, f) {
					t.Errorf("fields %v lack %q", fields, f)
				}
			}
		})
	}
	got, err := e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	if err != nil || !proto.Equal(got, v1) || e.versionCount(nhs) != 2 {
		t.Fatalf("the plan changed after denied calls: version %d, %d versions", got.GetVersion(), e.versionCount(nhs))
	}
	if _, err := e.Store.Get(t.Context(), fixture.NHSNumber(32)); err == nil {
		t.Fatal("a denied create was written")
	}
	// Every denied call on the plan is in the audit log, with its outcome.
	denied := 0
	for _, ev := range e.auditEvents(nhs) {
		if ev.GetOutcome() == "PERMISSION_DENIED" {
			denied++
		}
	}
	if denied != 11 {
		t.Fatalf("audit holds %d PERMISSION_DENIED events for the plan, want 11", denied)
	}
}

func TestAllowedWrites(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(33)
	cur := e.create(trustUser, fixture.TrustPlan(nhs))
	steps := []struct {
		name string
		who  caller
		fn   func(*careplanv1.CarePlan)
	}{
		{"council edits its own goal", council, func(p *careplanv1.CarePlan) { p.Goals[1].Status = careplanv1.Goal_STATUS_ACHIEVED }},
		{"council adds its own activity", council, func(p *careplanv1.CarePlan) {
			p.Activities = append(p.Activities, &careplanv1.Activity{
				Description: "Day centre", Status: careplanv1.Activity_STATUS_SCHEDULED, Kind: careplanv1.Activity_KIND_OTHER,
				Provider: fixture.Council(), Funding: careplanv1.Activity_FUNDING_COUNCIL,
			})
		}},
		{"coordinator edits the council's goal", trustUser, func(p *careplanv1.CarePlan) { p.Goals[1].Description = "coordinator wording" }},
		{"coordinator changes the status", trustUser, func(p *careplanv1.CarePlan) { p.Status = careplanv1.CarePlan_STATUS_ON_HOLD }},
	}
	for _, s := range steps {
		p := proto.Clone(cur).(*careplanv1.CarePlan)
		s.fn(p)
		next, err := e.plans.UpdateCarePlan(e.as(s.who), &careplanv1.UpdateCarePlanRequest{CarePlan: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"*"}}})
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if next.GetVersion() != cur.GetVersion()+1 {
			t.Fatalf("%s: version %d", s.name, next.GetVersion())
		}
		cur = next
	}
	if id := cur.GetActivities()[len(cur.GetActivities())-1].GetId(); id == "" {
		t.Fatal("the server did not assign an id to the new activity")
	}
}

func TestBreakGlassRead(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(34)
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	reason := "Unconscious in A&E, need the care plan"
	got, err := e.plans.GetCarePlan(e.as(breakGlass, "x-access-reason", reason), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	if err != nil || !proto.Equal(got, v1) {
		t.Fatalf("break-glass Get = %v, %v", got, err)
	}
	evs := e.auditEvents(nhs)
	last := evs[len(evs)-1]
	if last.GetAccessReason() != reason || last.GetSubject() != "ed-1" || last.GetOutcome() != "OK" || !slices.Contains(last.GetRoles(), auth.RoleBreakGlass) {
		t.Fatalf("break-glass audit event = %v", last)
	}
	feed, err := e.Store.Events(t.Context(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(feed); n != 2 || feed[1].GetType() != careplanv1.CarePlanEvent_TYPE_ACCESSED_BREAK_GLASS || feed[1].GetAccessReason() != reason {
		t.Fatalf("change feed = %v", feed)
	}
}
