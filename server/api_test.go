package server_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

func (e *env) create(c caller, p *careplanv1.CarePlan) *careplanv1.CarePlan {
	e.t.Helper()
	out, err := e.plans.CreateCarePlan(e.as(c), &careplanv1.CreateCarePlanRequest{CarePlan: p})
	if err != nil {
		e.t.Fatalf("CreateCarePlan: %v", err)
	}
	return out
}

// seed creates the fixture plan as the trust, then lets the council add its
// own council-funded activity (which the trust may not set), giving version 2.
func (e *env) seed(nhs string) *careplanv1.CarePlan {
	e.t.Helper()
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	change := &careplanv1.CarePlan{NhsNumber: nhs, Etag: v1.GetEtag(), Activities: append(v1.GetActivities(), fixture.CouncilActivity())}
	v2, err := e.plans.UpdateCarePlan(e.as(council), &careplanv1.UpdateCarePlanRequest{
		CarePlan: change, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"activities"}},
	})
	if err != nil {
		e.t.Fatalf("council adds its activity: %v", err)
	}
	return v2
}

func TestCreateGetUpdate(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(1)
	created := e.create(trustUser, fixture.TrustPlan(nhs))
	if created.GetVersion() != 1 || created.GetEtag() == "" || created.GetCreatedBy().GetOrgCode() != "RXA" {
		t.Fatalf("created = version %d etag %q by %v", created.GetVersion(), created.GetEtag(), created.GetCreatedBy())
	}
	got, err := e.plans.GetCarePlan(e.as(council), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	if err != nil || !proto.Equal(got, created) {
		t.Fatalf("council Get = %v, %v", got, err)
	}
	// The council changes its own goal, with a mask.
	change := &careplanv1.CarePlan{NhsNumber: nhs, Etag: created.GetEtag(), Goals: created.GetGoals()}
	change.Goals[1].Description = "Stay at home with a new care package"
	upd, err := e.plans.UpdateCarePlan(e.as(council), &careplanv1.UpdateCarePlanRequest{
		CarePlan: change, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"goals"}},
	})
	if err != nil {
		t.Fatalf("UpdateCarePlan: %v", err)
	}
	if upd.GetVersion() != 2 || upd.GetGoals()[1].GetDescription() != "Stay at home with a new care package" || upd.GetUpdatedBy().GetOrgCode() != "C123" {
		t.Fatalf("updated = %v", upd)
	}
	if upd.GetWhatMatters() != created.GetWhatMatters() {
		t.Fatal("a masked update changed a field outside the mask")
	}
}

func TestCreateAlreadyExists(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(2)
	e.create(trustUser, fixture.TrustPlan(nhs))
	_, err := e.plans.CreateCarePlan(e.as(trustUser), &careplanv1.CreateCarePlanRequest{CarePlan: fixture.TrustPlan(nhs)})
	info, _ := wantCode(t, err, codes.AlreadyExists)
	if info.GetReason() != "PLAN_ALREADY_EXISTS" {
		t.Fatalf("reason = %q", info.GetReason())
	}
	if n := e.versionCount(nhs); n != 1 {
		t.Fatalf("versions = %d, want 1", n)
	}
}

func TestGetNotFound(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(3)
	_, err := e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	info, _ := wantCode(t, err, codes.NotFound)
	if info.GetReason() != "PLAN_NOT_FOUND" {
		t.Fatalf("reason = %q", info.GetReason())
	}
	if strings.Contains(err.Error(), nhs) {
		t.Fatal("error message carries the NHS number")
	}
	_, err = e.plans.ListCarePlanVersions(e.as(trustUser), &careplanv1.ListCarePlanVersionsRequest{NhsNumber: nhs})
	wantCode(t, err, codes.NotFound)
}

func TestUpdateStaleEtag(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(4)
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	first := proto.Clone(v1).(*careplanv1.CarePlan)
	first.WhatMatters = "first writer"
	v2, err := e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{CarePlan: first})
	if err != nil {
		t.Fatal(err)
	}
	second := proto.Clone(v1).(*careplanv1.CarePlan)
	second.WhatMatters = "second writer, based on v1"
	_, err = e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{CarePlan: second})
	info, _ := wantCode(t, err, codes.Aborted)
	if info.GetReason() != "ETAG_MISMATCH" || info.GetMetadata()["current_etag"] != v2.GetEtag() {
		t.Fatalf("ErrorInfo = %v, want ETAG_MISMATCH with current_etag %q", info, v2.GetEtag())
	}
	got, _ := e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	if got.GetWhatMatters() != "first writer" || e.versionCount(nhs) != 2 {
		t.Fatal("the stale update was written")
	}
}

func TestUpdateMissingEtag(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(5)
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	change := proto.Clone(v1).(*careplanv1.CarePlan)
	change.Etag, change.WhatMatters = "", "no etag"
	_, err := e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{CarePlan: change})
	_, fields := wantCode(t, err, codes.InvalidArgument)
	if !slices.Equal(fields, []string{"care_plan.etag"}) {
		t.Fatalf("fields = %v, want [care_plan.etag]", fields)
	}
	if e.versionCount(nhs) != 1 {
		t.Fatal("an update without etag was written")
	}
}

func TestUpdateNoChangeStoresNothing(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(6)
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	got, err := e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{
		CarePlan: v1, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"*"}},
	})
	if err != nil || !proto.Equal(got, v1) {
		t.Fatalf("no-op update = %v, %v; want the current plan", got, err)
	}
	if e.versionCount(nhs) != 1 {
		t.Fatal("a no-op update stored a new version")
	}
}

func TestUpdateMaskSemantics(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(7)
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	// A nested path changes only that field.
	change := &careplanv1.CarePlan{NhsNumber: nhs, Etag: v1.GetEtag(), Person: &careplanv1.Person{GivenName: "Adaline"}}
	v2, err := e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{
		CarePlan: change, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"person.given_name"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if v2.GetPerson().GetGivenName() != "Adaline" || v2.GetPerson().GetFamilyName() != "Example" {
		t.Fatalf("person = %v", v2.GetPerson())
	}
	// No mask: only populated fields change (AIP-134).
	v3, err := e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{
		CarePlan: &careplanv1.CarePlan{NhsNumber: nhs, Etag: v2.GetEtag(), NextReviewDate: "2027-01-15"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if v3.GetNextReviewDate() != "2027-01-15" || len(v3.GetGoals()) != 2 {
		t.Fatalf("implied mask changed too much: review %q goals %d", v3.GetNextReviewDate(), len(v3.GetGoals()))
	}
	// A masked field absent from the request is cleared.
	v4, err := e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{
		CarePlan: &careplanv1.CarePlan{NhsNumber: nhs, Etag: v3.GetEtag()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"what_matters"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if v4.GetWhatMatters() != "" {
		t.Fatal("masked empty field was not cleared")
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(8)
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	ctx := e.as(trustUser)
	badPlan := fixture.TrustPlan(fixture.NHSNumber(9))
	badPlan.NhsNumber = "9434765918"
	badPlan.Person.BirthDate = "2025-02-29"
	badPlan.Goals[0].Owner.OdsCode = "not an ods"
	badPlan.Status = 99
	tests := []struct {
		name       string
		call       func() error
		wantFields []string
	}{
		{"create without plan", func() error {
			_, err := e.plans.CreateCarePlan(ctx, &careplanv1.CreateCarePlanRequest{})
			return err
		}, []string{"care_plan"}},
		{"create with every bad field named", func() error {
			_, err := e.plans.CreateCarePlan(ctx, &careplanv1.CreateCarePlanRequest{CarePlan: badPlan})
			return err
		}, []string{"care_plan.nhs_number", "care_plan.person.birth_date", "care_plan.status", "care_plan.goals[0].owner.ods_code"}},
		{"get invalid NHS number", func() error {
			_, err := e.plans.GetCarePlan(ctx, &careplanv1.GetCarePlanRequest{NhsNumber: "9434765918"})
			return err
		}, []string{"nhs_number"}},
		{"get NHS number with control characters", func() error {
			_, err := e.plans.GetCarePlan(ctx, &careplanv1.GetCarePlanRequest{NhsNumber: "943\x00476\n5919"})
			return err
		}, []string{"nhs_number"}},
		{"get reserved NHS number", func() error {
			_, err := e.plans.GetCarePlan(ctx, &careplanv1.GetCarePlanRequest{NhsNumber: "1234567890"})
			return err
		}, []string{"nhs_number"}},
		{"get missing NHS number", func() error {
			_, err := e.plans.GetCarePlan(ctx, &careplanv1.GetCarePlanRequest{})
			return err
		}, []string{"nhs_number"}},
		{"update unknown mask path", func() error {
			_, err := e.plans.UpdateCarePlan(ctx, &careplanv1.UpdateCarePlanRequest{
				CarePlan: v1, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"no_such_field"}},
			})
			return err
		}, []string{"update_mask.paths[0]"}},
		{"update server-set field", func() error {
			_, err := e.plans.UpdateCarePlan(ctx, &careplanv1.UpdateCarePlanRequest{
				CarePlan: v1, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"what_matters", "version"}},
			})
			return err
		}, []string{"update_mask.paths[1]"}},
		{"update making the plan invalid", func() error {
			bad := proto.Clone(v1).(*careplanv1.CarePlan)
			bad.Coordinator = nil
			bad.Activities[0].Funding = careplanv1.Activity_FUNDING_UNSPECIFIED
			_, err := e.plans.UpdateCarePlan(ctx, &careplanv1.UpdateCarePlanRequest{CarePlan: bad, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"*"}}})
			return err
		}, []string{"care_plan.coordinator", "care_plan.activities[0].funding"}},
		{"too many goals", func() error {
			big := proto.Clone(v1).(*careplanv1.CarePlan)
			for range 101 {
				big.Goals = append(big.Goals, &careplanv1.Goal{Description: "g", Status: careplanv1.Goal_STATUS_ACTIVE, Owner: fixture.Trust()})
			}
			_, err := e.plans.UpdateCarePlan(ctx, &careplanv1.UpdateCarePlanRequest{CarePlan: big, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"goals"}}})
			return err
		}, []string{"care_plan.goals"}},
		{"list negative page size", func() error {
			_, err := e.plans.ListCarePlans(ctx, &careplanv1.ListCarePlansRequest{PageSize: -1})
			return err
		}, []string{"page_size"}},
		{"list forged page token", func() error {
			_, err := e.plans.ListCarePlans(ctx, &careplanv1.ListCarePlansRequest{PageToken: "bm90LWEtdG9rZW4"})
			return err
		}, []string{"page_token"}},
		{"list bad review date", func() error {
			_, err := e.plans.ListCarePlans(ctx, &careplanv1.ListCarePlansRequest{ReviewDueBefore: "2026-13-01"})
			return err
		}, []string{"review_due_before"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			info, fields := wantCode(t, err, codes.InvalidArgument)
			if info == nil || info.GetReason() == "" {
				t.Fatal("no ErrorInfo")
			}
			for _, f := range tc.wantFields {
				if !slices.Contains(fields, f) {
					t.Errorf("BadRequest fields %v lack %q", fields, f)
				}
			}
			if strings.Contains(err.Error(), "Ada") {
				t.Error("error message carries a name")
			}
		})
	}
	if e.versionCount(nhs) != 1 {
		t.Fatal("a rejected request was written")
	}
	if _, err := e.Store.Get(context.Background(), fixture.NHSNumber(9)); err == nil {
		t.Fatal("an invalid create was written")
	}
}

func TestOversizeRequest(t *testing.T) {
	e := newEnv(t)
	p := fixture.TrustPlan(fixture.NHSNumber(10))
	p.WhatMatters = strings.Repeat("x", 1<<20)
	_, err := e.plans.CreateCarePlan(e.as(trustUser), &careplanv1.CreateCarePlanRequest{CarePlan: p})
	wantCode(t, err, codes.ResourceExhausted)
	if _, err := e.Store.Get(context.Background(), p.GetNhsNumber()); err == nil {
		t.Fatal("an oversize create was written")
	}
}

func TestRequestIDRetryWritesOnce(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(11)
	req := &careplanv1.CreateCarePlanRequest{CarePlan: fixture.TrustPlan(nhs), RequestId: "create-1"}
	first, err := e.plans.CreateCarePlan(e.as(trustUser), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.plans.CreateCarePlan(e.as(trustUser), req)
	if err != nil || !proto.Equal(again, first) {
		t.Fatalf("retried create = %v, %v; want the first result", again, err)
	}
	change := proto.Clone(first).(*careplanv1.CarePlan)
	change.WhatMatters = "once"
	ureq := &careplanv1.UpdateCarePlanRequest{CarePlan: change, RequestId: "update-1"}
	v2, err := e.plans.UpdateCarePlan(e.as(trustUser), ureq)
	if err != nil {
		t.Fatal(err)
	}
	v2again, err := e.plans.UpdateCarePlan(e.as(trustUser), ureq)
	if err != nil || !proto.Equal(v2again, v2) {
		t.Fatalf("retried update = %v, %v; want the first result", v2again, err)
	}
	if n := e.versionCount(nhs); n != 2 {
		t.Fatalf("versions = %d, want 2", n)
	}
	// Another caller's identical request id is not a replay of this one.
	other := fixture.TrustPlan(fixture.NHSNumber(12))
	nurse2 := caller{Subject: "nurse-2", Org: "RXA", OrgType: "nhs", Roles: rw}
	if _, err := e.plans.CreateCarePlan(e.as(nurse2), &careplanv1.CreateCarePlanRequest{CarePlan: other, RequestId: "create-1"}); err != nil {
		t.Fatalf("another caller's create with the same request id: %v", err)
	}
}

func TestRestartKeepsPlansAndVersions(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(13)
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	change := proto.Clone(v1).(*careplanv1.CarePlan)
	change.WhatMatters = "survives a restart"
	v2, err := e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{CarePlan: change})
	if err != nil {
		t.Fatal(err)
	}
	e.restart()
	got, err := e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	if err != nil || !proto.Equal(got, v2) {
		t.Fatalf("after restart Get = %v, %v", got, err)
	}
	hist, err := e.plans.ListCarePlanVersions(e.as(trustUser), &careplanv1.ListCarePlanVersionsRequest{NhsNumber: nhs})
	if err != nil || len(hist.GetVersions()) != 2 || !proto.Equal(hist.GetVersions()[0], v1) {
		t.Fatalf("after restart history = %d versions, %v", len(hist.GetVersions()), err)
	}
}

func TestListCarePlans(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.create(trustUser, fixture.TrustPlan(fixture.NHSNumber(100+i)))
	}
	notCouncil := fixture.TrustPlan(fixture.NHSNumber(110))
	notCouncil.Team, notCouncil.Goals, notCouncil.Activities = notCouncil.Team[:1], notCouncil.Goals[:1], notCouncil.Activities[:1]
	e.create(trustUser, notCouncil)
	var seen []string
	req := &careplanv1.ListCarePlansRequest{PageSize: 2}
	for range 10 {
		resp, err := e.plans.ListCarePlans(e.as(council), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.GetCarePlans() {
			seen = append(seen, p.GetNhsNumber())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if len(seen) != 5 || slices.Contains(seen, notCouncil.GetNhsNumber()) {
		t.Fatalf("council listed %d plans (%v); want the 5 it is related to", len(seen), seen)
	}
	// Each plan listed is audited as a read.
	if evs := e.auditEvents(seen[0]); len(evs) != 2 || evs[1].GetMethod() != careplanv1.CarePlanService_ListCarePlans_FullMethodName {
		t.Fatalf("list was not audited: %v", evs)
	}
	resp, err := e.plans.ListCarePlans(e.as(unrelated), &careplanv1.ListCarePlansRequest{})
	if err != nil || len(resp.GetCarePlans()) != 0 {
		t.Fatalf("unrelated org listed %d plans, %v", len(resp.GetCarePlans()), err)
	}
}

func TestHistoryPages(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(14)
	cur := e.create(trustUser, fixture.TrustPlan(nhs))
	for i := range 4 {
		change := proto.Clone(cur).(*careplanv1.CarePlan)
		change.WhatMatters = strings.Repeat("v", i+1)
		var err error
		if cur, err = e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{CarePlan: change}); err != nil {
			t.Fatal(err)
		}
	}
	var versions []int64
	req := &careplanv1.ListCarePlanVersionsRequest{NhsNumber: nhs, PageSize: 2}
	for range 10 {
		resp, err := e.plans.ListCarePlanVersions(e.as(council), req)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range resp.GetVersions() {
			versions = append(versions, v.GetVersion())
			if v.GetUpdatedBy().GetSubject() == "" || v.GetUpdateTime() == nil {
				t.Fatal("a version lacks who changed it and when")
			}
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if !slices.Equal(versions, []int64{1, 2, 3, 4, 5}) {
		t.Fatalf("versions = %v, want 1..5 oldest first", versions)
	}
}
