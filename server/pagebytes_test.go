package server_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/server"
)

const testPageBytes = 30000

// TestListCarePlanVersionsPagesByBytes: a page of history ends at the byte
// bound, not only at page_size, and holds at least one version however
// large; following next_page_token returns every version exactly once.
func TestListCarePlanVersionsPagesByBytes(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxResponseBytes = testPageBytes })
	nhs := fixture.NHSNumber(60)
	cur := e.create(trustUser, fixture.TrustPlan(nhs))
	for i := range 11 {
		next := &careplanv1.CarePlan{NhsNumber: nhs, Etag: cur.GetEtag(), WhatMatters: strings.Repeat(string(rune('a'+i)), 8000)}
		switch i {
		case 5: // version 7 is over the bound by itself
			next.Goals = padGoals(fixture.TrustPlan(nhs), 40000).GetGoals()
		case 6:
			next.Goals = fixture.TrustPlan(nhs).GetGoals()
		}
		var err error
		if cur, err = e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{CarePlan: next}); err != nil {
			t.Fatal(err)
		}
	}
	var got []int64
	req := &careplanv1.ListCarePlanVersionsRequest{NhsNumber: nhs, PageSize: 100}
	for pages := 1; ; pages++ {
		resp, err := e.plans.ListCarePlanVersions(e.as(council), req)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, v := range resp.GetVersions() {
			size += proto.Size(v)
			got = append(got, v.GetVersion())
		}
		if n := len(resp.GetVersions()); n == 0 || (n > 1 && size > testPageBytes) {
			t.Fatalf("page %d: %d versions of %d bytes, bound %d", pages, n, size, testPageBytes)
		}
		if resp.GetNextPageToken() == "" {
			if pages < 4 {
				t.Fatalf("%d pages for 11 versions of about 9 KB and one of 50 KB", pages)
			}
			break
		}
		if pages > 12 {
			t.Fatal("paging does not end")
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if len(got) != 12 {
		t.Fatalf("versions = %v, want 1..12 exactly once", got)
	}
	for i, v := range got {
		if v != int64(i+1) {
			t.Fatalf("versions = %v, want 1..12 exactly once, oldest first", got)
		}
	}
	// page_size still bounds a page.
	resp, err := e.plans.ListCarePlanVersions(e.as(council), &careplanv1.ListCarePlanVersionsRequest{NhsNumber: nhs, PageSize: 2})
	if err != nil || len(resp.GetVersions()) != 2 || resp.GetNextPageToken() == "" {
		t.Fatalf("page_size 2: %d versions, token %q, %v", len(resp.GetVersions()), resp.GetNextPageToken(), err)
	}
}

// TestListCarePlansPagesByBytes: the same bound holds for pages of plans.
func TestListCarePlansPagesByBytes(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxResponseBytes = testPageBytes })
	want := map[string]bool{}
	for i := range 7 {
		p := fixture.TrustPlan(fixture.NHSNumber(70 + i))
		p.WhatMatters = strings.Repeat("w", 10000)
		want[e.create(trustUser, p).GetNhsNumber()] = true
	}
	got := map[string]bool{}
	req := &careplanv1.ListCarePlansRequest{PageSize: 100}
	for pages := 1; ; pages++ {
		resp, err := e.plans.ListCarePlans(e.as(council), req)
		if err != nil {
			t.Fatal(err)
		}
		size := 0
		for _, p := range resp.GetCarePlans() {
			size += proto.Size(p)
			if got[p.GetNhsNumber()] {
				t.Fatal("a plan was listed twice")
			}
			got[p.GetNhsNumber()] = true
		}
		if n := len(resp.GetCarePlans()); n == 0 || (n > 1 && size > testPageBytes) {
			t.Fatalf("page %d: %d plans of %d bytes, bound %d", pages, n, size, testPageBytes)
		}
		if resp.GetNextPageToken() == "" {
			if pages < 3 {
				t.Fatalf("%d pages for 7 plans of about 12 KB", pages)
			}
			break
		}
		if pages > 7 {
			t.Fatal("paging does not end")
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d plans, want %d", len(got), len(want))
	}
	// Each plan shown was audited as a read, once.
	for nhs := range want {
		n := 0
		for _, ev := range e.auditEvents(nhs) {
			if ev.GetMethod() == careplanv1.CarePlanService_ListCarePlans_FullMethodName {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("plan listed once, audited %d times", n)
		}
	}
}
