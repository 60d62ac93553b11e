// Package storetest is the conformance suite every store.Store backend must
// pass unchanged. A backend's test calls Run with a Harness.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careplan/careplan/internal/fixture"
	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// Harness opens stores for the suite.
type Harness struct {
	// Open returns a new, empty store, closed by the test's cleanup.
	Open func(t *testing.T) store.Store
	// Reopen closes s and opens the same data again, as a restart does.
	Reopen func(t *testing.T, s store.Store) store.Store
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"CreateGet", testCreateGet},
		{"CreateExisting", testCreateExisting},
		{"GetMissing", testGetMissing},
		{"GetStored", testGetStored},
		{"UpdateEtag", testUpdateEtag},
		{"UpdateMissing", testUpdateMissing},
		{"VersionsKept", testVersionsKept},
		{"RequestIdempotency", testRequestIdempotency},
		{"PruneRequests", testPruneRequests},
		{"ListPlansByOrg", testListPlansByOrg},
		{"ListPlansFiltersAndPages", testListPlansPages},
		{"AuditChain", testAuditChain},
		{"ListAuditScope", testListAuditScope},
		{"RevisionsAndEvents", testRevisions},
		{"WaitRevision", testWaitRevision},
		{"ReadsBoundedInBytes", testBoundedReads},
		{"Restart", testRestart},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentAudit", testConcurrentAudit},
		{"ConcurrentConflicts", testConcurrentConflicts},
		{"InvalidRecord", testInvalidRecord},
		{"NoLostUpdates", testNoLostUpdates},
		{"CanceledNotCommitted", testCanceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

var (
	trustActor   = &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg, OrgType: careplanv1.Organisation_TYPE_NHS}
	councilActor = &careplanv1.Actor{Subject: "sw-1", OrgCode: fixture.CouncilOrg, OrgType: careplanv1.Organisation_TYPE_COUNCIL}
)

func auditFor(a *careplanv1.Actor, method string) *careplanv1.AuditEvent {
	return &careplanv1.AuditEvent{
		Subject: a.GetSubject(), OrgCode: a.GetOrgCode(), OrgType: a.GetOrgType(),
		Method: method, Time: nowpb(),
	}
}

func create(t *testing.T, s store.Store, nhs string) *careplanv1.CarePlan {
	t.Helper()
	p, err := s.Create(context.Background(), store.Write{Plan: fixture.Plan(nhs), Actor: trustActor, Audit: auditFor(trustActor, "Create")})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return p
}

func update(t *testing.T, s store.Store, cur *careplanv1.CarePlan, change func(*careplanv1.CarePlan)) *careplanv1.CarePlan {
	t.Helper()
	next := proto.Clone(cur).(*careplanv1.CarePlan)
	change(next)
	p, err := s.Update(context.Background(), store.Write{Plan: next, MatchEtag: cur.GetEtag(), Actor: councilActor, Audit: auditFor(councilActor, "Update")})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	return p
}

func versions(t *testing.T, s store.Store, nhs string) []*careplanv1.CarePlan {
	t.Helper()
	vs, err := s.ListVersions(context.Background(), nhs, 0, 1000)
	if err != nil {
		t.Fatalf("ListVersions: %v", err)
	}
	return vs
}

func allAudit(t *testing.T, s store.Store, q store.AuditQuery) []*careplanv1.AuditEvent {
	t.Helper()
	var out []*careplanv1.AuditEvent
	q.Limit = 7 // small pages exercise the continuation
	for {
		evs, next, err := s.ListAudit(context.Background(), q)
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		out = append(out, evs...)
		if next == 0 {
			return out
		}
		q.AfterSequence = next
	}
}

func testCreateGet(t *testing.T, h Harness) {
	s := h.Open(t)
	nhs := fixture.NHSNumber(1)
	p := create(t, s, nhs)
	if p.GetVersion() != 1 || p.GetEtag() == "" || p.GetCreateTime() == nil || p.GetUpdateTime() == nil {
		t.Fatalf("server fields not set: version=%d etag=%q create=%v update=%v", p.GetVersion(), p.GetEtag(), p.GetCreateTime(), p.GetUpdateTime())
	}
	if !proto.Equal(p.GetCreatedBy(), trustActor) || !proto.Equal(p.GetUpdatedBy(), trustActor) {
		t.Fatalf("created_by/updated_by = %v/%v, want %v", p.GetCreatedBy(), p.GetUpdatedBy(), trustActor)
	}
	got, err := s.Get(context.Background(), nhs)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if !proto.Equal(got, p) {
		t.Fatalf("Get returned\n%v\nwant\n%v", got, p)
	}
	want := fixture.Plan(nhs)
	clearServerFields(got)
	if !proto.Equal(got, want) {
		t.Fatalf("stored client fields differ from what was written")
	}
}

func testCreateExisting(t *testing.T, h Harness) {
	s := h.Open(t)
	nhs := fixture.NHSNumber(2)
	first := create(t, s, nhs)
	other := fixture.Plan(nhs)
	other.WhatMatters = "something else"
	_, err := s.Create(context.Background(), store.Write{Plan: other, Actor: councilActor})
	if !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second Create: err = %v, want ErrAlreadyExists", err)
	}
	got, _ := s.Get(context.Background(), nhs)
	if !proto.Equal(got, first) {
		t.Fatal("second Create changed the stored plan")
	}
	if n := len(versions(t, s, nhs)); n != 1 {
		t.Fatalf("versions = %d, want 1", n)
	}
}

func testGetMissing(t *testing.T, h Harness) {
	s := h.Open(t)
	if _, err := s.Get(context.Background(), fixture.NHSNumber(3)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get: err = %v, want ErrNotFound", err)
	}
	if _, err := s.ListVersions(context.Background(), fixture.NHSNumber(3), 0, 10); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ListVersions: err = %v, want ErrNotFound", err)
	}
}

func testGetStored(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	nhs := fixture.NHSNumber(4)
	if _, err := s.GetStored(ctx, nhs, fixture.TrustOrg); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetStored before create: err = %v, want ErrNotFound", err)
	}
	p := update(t, s, create(t, s, nhs), func(p *careplanv1.CarePlan) { p.SharingObjection = true })
	for _, tc := range []struct {
		org     string
		related bool
	}{
		{fixture.TrustOrg, true},
		{strings.ToLower(fixture.CouncilOrg), true}, // any case
		{"ZZZ9", false},
		{"", false},
	} {
		sp, err := s.GetStored(ctx, nhs, tc.org)
		if err != nil {
			t.Fatalf("GetStored(%q): %v", tc.org, err)
		}
		got := decode(t, sp)
		if !proto.Equal(got, p) || sp.Version != p.GetVersion() {
			t.Fatalf("GetStored(%q): version %d, body\n%v\nwant version %d,\n%v", tc.org, sp.Version, got, p.GetVersion(), p)
		}
		want := policy.ReadFacts{Related: tc.related, SharingObjection: true}
		if sp.Facts != want || policy.FactsOf(p, tc.org) != want {
			t.Fatalf("GetStored(%q): facts %+v, want %+v (FactsOf says %+v)", tc.org, sp.Facts, want, policy.FactsOf(p, tc.org))
		}
	}
	// An organisation that stops being related reads as unrelated at once.
	p = update(t, s, p, func(p *careplanv1.CarePlan) { p.Team, p.Activities = p.Team[:1], nil })
	if policy.Related(p, fixture.CouncilOrg) {
		t.Fatal("fixture: council still related after the change")
	}
	if sp, err := s.GetStored(ctx, nhs, fixture.CouncilOrg); err != nil || sp.Facts.Related {
		t.Fatalf("GetStored(council) after removal: %+v, %v; want unrelated", sp, err)
	}
}

// decode returns the plan a StoredPlan holds.
func decode(t *testing.T, sp *store.StoredPlan) *careplanv1.CarePlan {
	t.Helper()
	p := &careplanv1.CarePlan{}
	if err := proto.Unmarshal(sp.Body, p); err != nil {
		t.Fatalf("stored body does not decode: %v", err)
	}
	return p
}

func testUpdateEtag(t *testing.T, h Harness) {
	s := h.Open(t)
	nhs := fixture.NHSNumber(4)
	v1 := create(t, s, nhs)
	v2 := update(t, s, v1, func(p *careplanv1.CarePlan) { p.WhatMatters = "v2" })
	if v2.GetVersion() != 2 || v2.GetEtag() == v1.GetEtag() {
		t.Fatalf("v2: version=%d etag=%q (v1 etag %q)", v2.GetVersion(), v2.GetEtag(), v1.GetEtag())
	}
	if !proto.Equal(v2.GetCreateTime(), v1.GetCreateTime()) || !proto.Equal(v2.GetCreatedBy(), v1.GetCreatedBy()) {
		t.Fatal("update changed create_time or created_by")
	}
	if !proto.Equal(v2.GetUpdatedBy(), councilActor) {
		t.Fatalf("updated_by = %v, want %v", v2.GetUpdatedBy(), councilActor)
	}
	stale := proto.Clone(v1).(*careplanv1.CarePlan)
	stale.WhatMatters = "lost update"
	_, err := s.Update(context.Background(), store.Write{Plan: stale, MatchEtag: v1.GetEtag(), Actor: trustActor})
	var mismatch *store.EtagMismatchError
	if !errors.As(err, &mismatch) || !errors.Is(err, store.ErrEtagMismatch) {
		t.Fatalf("stale Update: err = %v, want *EtagMismatchError", err)
	}
	if mismatch.Current != v2.GetEtag() {
		t.Fatalf("mismatch.Current = %q, want %q", mismatch.Current, v2.GetEtag())
	}
	got, _ := s.Get(context.Background(), nhs)
	if got.GetWhatMatters() != "v2" || len(versions(t, s, nhs)) != 2 {
		t.Fatal("stale update was written")
	}
}

func testUpdateMissing(t *testing.T, h Harness) {
	s := h.Open(t)
	_, err := s.Update(context.Background(), store.Write{Plan: fixture.Plan(fixture.NHSNumber(5)), MatchEtag: "1-x", Actor: trustActor})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Update: err = %v, want ErrNotFound", err)
	}
}

func testVersionsKept(t *testing.T, h Harness) {
	s := h.Open(t)
	nhs := fixture.NHSNumber(6)
	cur := create(t, s, nhs)
	for i := 2; i <= 12; i++ {
		cur = update(t, s, cur, func(p *careplanv1.CarePlan) { p.WhatMatters = fmt.Sprintf("v%d", i) })
	}
	vs := versions(t, s, nhs)
	if len(vs) != 12 {
		t.Fatalf("versions = %d, want 12", len(vs))
	}
	for i, v := range vs {
		if v.GetVersion() != int64(i+1) {
			t.Fatalf("versions[%d].version = %d, want %d (oldest first)", i, v.GetVersion(), i+1)
		}
		if i > 0 && v.GetWhatMatters() != fmt.Sprintf("v%d", i+1) {
			t.Fatalf("version %d holds %q", i+1, v.GetWhatMatters())
		}
	}
	page, err := s.ListVersions(context.Background(), nhs, 5, 3)
	if err != nil || len(page) != 3 || page[0].GetVersion() != 6 || page[2].GetVersion() != 8 {
		t.Fatalf("ListVersions(after 5, limit 3) = %d versions, err %v", len(page), err)
	}
}

func testRequestIdempotency(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	nhs := fixture.NHSNumber(7)
	w := store.Write{Plan: fixture.Plan(nhs), Actor: trustActor, RequestKey: "nurse-1/create/r1", Audit: auditFor(trustActor, "Create")}
	first, err := s.Create(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	w.Audit = auditFor(trustActor, "Create")
	again, err := s.Create(ctx, w)
	if err != nil || !proto.Equal(again, first) {
		t.Fatalf("retried Create = %v, %v; want the first result", again, err)
	}
	if got, ok, err := s.LookupRequest(ctx, "nurse-1/create/r1"); !ok || err != nil || !proto.Equal(got, first) {
		t.Fatalf("LookupRequest = %v, %v, %v", got, ok, err)
	}
	if _, ok, _ := s.LookupRequest(ctx, "nurse-1/create/unknown"); ok {
		t.Fatal("LookupRequest found an unknown key")
	}

	next := proto.Clone(first).(*careplanv1.CarePlan)
	next.WhatMatters = "once"
	uw := store.Write{Plan: next, MatchEtag: first.GetEtag(), Actor: councilActor, RequestKey: "sw-1/update/r2", Audit: auditFor(councilActor, "Update")}
	v2, err := s.Update(ctx, uw)
	if err != nil {
		t.Fatal(err)
	}
	// The retry carries the etag it was based on, now stale: it must still
	// return the first result, not ABORTED.
	uw.Audit = auditFor(councilActor, "Update")
	v2again, err := s.Update(ctx, uw)
	if err != nil || !proto.Equal(v2again, v2) {
		t.Fatalf("retried Update = %v, %v; want the first result", v2again, err)
	}
	if n := len(versions(t, s, nhs)); n != 2 {
		t.Fatalf("versions = %d, want 2 (each request written once)", n)
	}
	// Each call, retries included, is audited.
	if n := len(allAudit(t, s, store.AuditQuery{NhsNumber: nhs})); n != 4 {
		t.Fatalf("audit events = %d, want 4", n)
	}
}

func testPruneRequests(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	if _, ok := s.(store.RequestPruner); !ok {
		t.Fatalf("%T does not implement store.RequestPruner", s)
	}
	key := func(i int) string { return fmt.Sprintf("nurse-1/create/p%d", i) }
	write := func(i int) (*careplanv1.CarePlan, error) {
		return s.Create(ctx, store.Write{Plan: fixture.Plan(fixture.NHSNumber(20 + i)), Actor: trustActor, RequestKey: key(i), Audit: auditFor(trustActor, "Create")})
	}
	for i := range 3 {
		if _, err := write(i); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	if _, err := write(3); err != nil {
		t.Fatal(err)
	}
	prune := func(limit, want int) {
		t.Helper()
		if n, err := s.(store.RequestPruner).PruneRequests(ctx, before, limit); n != want || err != nil {
			t.Fatalf("PruneRequests(limit %d) = %d, %v; want %d", limit, n, err, want)
		}
	}
	found := func(i int) bool {
		t.Helper()
		_, ok, err := s.LookupRequest(ctx, key(i))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	prune(2, 2)
	if found(0) || found(1) || !found(2) {
		t.Fatalf("after pruning 2: keys found %v %v %v; want the two oldest gone", found(0), found(1), found(2))
	}
	prune(10, 1)
	prune(10, 0)
	s = h.Reopen(t, s)
	if found(2) || !found(3) {
		t.Fatal("after pruning and a restart: the old key is still found, or the new one is lost")
	}
	// The plans stay; a retry with a forgotten key is a new write.
	if p, err := s.Get(ctx, fixture.NHSNumber(20)); err != nil || p.GetVersion() != 1 {
		t.Fatalf("Get after pruning = %v, %v", p, err)
	}
	if _, err := write(0); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("retried Create with a pruned key = %v; want ErrAlreadyExists", err)
	}
}

func testListPlansByOrg(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	nhs := fixture.NHSNumber(8)
	p := create(t, s, nhs)
	for _, org := range []string{fixture.TrustOrg, fixture.CouncilOrg} {
		got, _, err := s.ListPlans(ctx, store.PlanQuery{Org: org, Limit: 10})
		if err != nil || len(got) != 1 || !proto.Equal(decode(t, got[0]), p) || got[0].NhsNumber != nhs || got[0].Version != 1 || !got[0].Facts.Related {
			t.Fatalf("ListPlans(%s) = %d plans, %v; want the plan", org, len(got), err)
		}
	}
	if got, _, _ := s.ListPlans(ctx, store.PlanQuery{Org: fixture.UnrelatedOrg, Limit: 10}); len(got) != 0 {
		t.Fatalf("unrelated org lists %d plans", len(got))
	}
	// Remove every council link: the council no longer lists the plan.
	update(t, s, p, func(p *careplanv1.CarePlan) {
		p.Team = p.Team[:1]
		p.Activities = p.Activities[:1]
	})
	if got, _, _ := s.ListPlans(ctx, store.PlanQuery{Org: fixture.CouncilOrg, Limit: 10}); len(got) != 0 {
		t.Fatalf("council still lists the plan after its links were removed")
	}
	if got, _, _ := s.ListPlans(ctx, store.PlanQuery{Org: fixture.TrustOrg, Limit: 10}); len(got) != 1 || got[0].Version != 2 || decode(t, got[0]).GetVersion() != 2 {
		t.Fatalf("trust list does not show version 2")
	}
}

func testListPlansPages(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	want := map[string]bool{}
	for i := range 7 {
		nhs := fixture.NHSNumber(100 + i)
		p := fixture.Plan(nhs)
		if i%2 == 0 {
			p.Status = careplanv1.CarePlan_STATUS_ON_HOLD
			p.NextReviewDate = "2026-01-01"
			p.Coordinator.Id = "P-other"
		}
		if _, err := s.Create(ctx, store.Write{Plan: p, Actor: trustActor}); err != nil {
			t.Fatal(err)
		}
		want[nhs] = i%2 == 0
	}
	list := func(q store.PlanQuery) []string {
		var got []string
		q.Org, q.Limit = fixture.TrustOrg, 3
		for range 20 {
			page, next, err := s.ListPlans(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > 3 {
				t.Fatalf("page of %d over limit 3", len(page))
			}
			for _, p := range page {
				got = append(got, decode(t, p).GetNhsNumber())
			}
			if next == "" {
				return got
			}
			q.After = next
		}
		t.Fatal("pagination did not end")
		return nil
	}
	all := list(store.PlanQuery{})
	if len(all) != 7 {
		t.Fatalf("paged list returned %d plans, want 7 exactly once: %v", len(all), all)
	}
	seen := map[string]bool{}
	for _, nhs := range all {
		if seen[nhs] {
			t.Fatalf("plan listed twice")
		}
		seen[nhs] = true
	}
	for name, q := range map[string]store.PlanQuery{
		"status":            {Status: careplanv1.CarePlan_STATUS_ON_HOLD},
		"coordinator":       {CoordinatorID: "P-other"},
		"review_due_before": {ReviewDueBefore: "2026-06-01"},
	} {
		got := list(q)
		if len(got) != 4 {
			t.Errorf("filter %s: %d plans, want 4", name, len(got))
		}
		for _, nhs := range got {
			if !want[nhs] {
				t.Errorf("filter %s returned a plan that does not match", name)
			}
		}
	}
}

func testAuditChain(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	nhs := fixture.NHSNumber(9)
	p := create(t, s, nhs)
	update(t, s, p, func(p *careplanv1.CarePlan) { p.WhatMatters = "x" })
	denied := auditFor(councilActor, "Get")
	denied.NhsNumber, denied.Outcome, denied.AccessReason = nhs, "PERMISSION_DENIED", "checking"
	if err := s.AppendAudit(ctx, denied, auditFor(trustActor, "List")); err != nil {
		t.Fatal(err)
	}
	evs := allAudit(t, s, store.AuditQuery{})
	if len(evs) != 4 {
		t.Fatalf("audit events = %d, want 4", len(evs))
	}
	var v store.ChainVerifier
	for _, ev := range evs {
		if err := v.Next(ev); err != nil {
			t.Fatal(err)
		}
	}
	if evs[0].GetOutcome() != "OK" || evs[0].GetPlanVersion() != 1 || evs[0].GetNhsNumber() != nhs {
		t.Fatalf("create audit event = %v", evs[0])
	}
	if evs[1].GetPlanVersion() != 2 || evs[1].GetSubject() != "sw-1" {
		t.Fatalf("update audit event = %v", evs[1])
	}
	if evs[2].GetOutcome() != "PERMISSION_DENIED" || evs[2].GetAccessReason() != "checking" {
		t.Fatalf("denied audit event = %v", evs[2])
	}
	// Tampering is detected: a changed event no longer hashes to the next
	// event's prev_hash.
	evs[1].Outcome = "PERMISSION_DENIED"
	var tv store.ChainVerifier
	var err error
	for _, ev := range evs {
		if err = tv.Next(ev); err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("a tampered event passed verification")
	}
	byNHS := allAudit(t, s, store.AuditQuery{NhsNumber: nhs})
	if len(byNHS) != 3 {
		t.Fatalf("audit events for the plan = %d, want 3", len(byNHS))
	}
	start := evs[1].GetTime().AsTime()
	ranged := allAudit(t, s, store.AuditQuery{Start: start, End: start.Add(time.Nanosecond)})
	for _, ev := range ranged {
		if !ev.GetTime().AsTime().Equal(start) {
			t.Fatalf("time range returned an event outside it")
		}
	}
}

func testListAuditScope(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	related := fixture.NHSNumber(10)
	create(t, s, related)
	other := fixture.Plan(fixture.NHSNumber(11))
	other.Team, other.Goals, other.Activities = other.Team[:1], other.Goals[:1], other.Activities[:1]
	if _, err := s.Create(ctx, store.Write{Plan: other, Actor: trustActor, Audit: auditFor(trustActor, "Create")}); err != nil {
		t.Fatal(err)
	}
	mine := auditFor(councilActor, "Get")
	mine.NhsNumber = other.GetNhsNumber()
	mine.Outcome = "PERMISSION_DENIED"
	if err := s.AppendAudit(ctx, mine); err != nil {
		t.Fatal(err)
	}
	// The council sees events on the plan related to it and its own users'
	// events, not the trust's events on the plan it has no part in.
	got := allAudit(t, s, store.AuditQuery{Org: fixture.CouncilOrg})
	if len(got) != 2 {
		t.Fatalf("council sees %d events, want 2", len(got))
	}
	for _, ev := range got {
		if ev.GetNhsNumber() == other.GetNhsNumber() && ev.GetOrgCode() != fixture.CouncilOrg {
			t.Fatal("council sees another organisation's event on an unrelated plan")
		}
	}
}

func testRevisions(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	r0, _ := s.Revision(ctx)
	nhs := fixture.NHSNumber(12)
	p := create(t, s, nhs)
	p2 := update(t, s, p, func(p *careplanv1.CarePlan) { p.WhatMatters = "r2" })
	if err := s.RecordAccess(ctx, store.Access{Plan: p2, Actor: councilActor, Reason: "A&E attendance, unconscious", Audit: auditFor(councilActor, "Get")}); err != nil {
		t.Fatal(err)
	}
	r3, _ := s.Revision(ctx)
	if r3 != r0+3 {
		t.Fatalf("revision = %d, want %d", r3, r0+3)
	}
	evs, err := s.Events(ctx, r0, 100)
	if err != nil || len(evs) != 3 {
		t.Fatalf("Events = %d, %v; want 3", len(evs), err)
	}
	wantTypes := []careplanv1.CarePlanEvent_Type{
		careplanv1.CarePlanEvent_TYPE_CREATED, careplanv1.CarePlanEvent_TYPE_UPDATED, careplanv1.CarePlanEvent_TYPE_ACCESSED_BREAK_GLASS,
	}
	for i, ev := range evs {
		if ev.GetRevision() != r0+int64(i)+1 || ev.GetType() != wantTypes[i] || ev.GetNhsNumber() != nhs {
			t.Fatalf("event %d = rev %d type %v", i, ev.GetRevision(), ev.GetType())
		}
	}
	if !proto.Equal(evs[1].GetCarePlan(), p2) || evs[2].GetAccessReason() == "" || !proto.Equal(evs[2].GetActor(), councilActor) {
		t.Fatal("events do not carry the stored plan, actor and reason")
	}
	tail, _ := s.Events(ctx, r0+2, 100)
	if len(tail) != 1 || tail[0].GetRevision() != r0+3 {
		t.Fatal("Events(after) does not resume after the given revision")
	}
}

func testWaitRevision(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	r, _ := s.Revision(ctx)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := s.WaitRevision(short, r); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitRevision with no change: %v, want DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitRevision(ctx, r) }()
	create(t, s, fixture.NHSNumber(13))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitRevision did not wake after a commit")
	}
}

func testRestart(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	nhs := fixture.NHSNumber(14)
	p := update(t, s, create(t, s, nhs), func(p *careplanv1.CarePlan) { p.WhatMatters = "kept" })
	rev, _ := s.Revision(ctx)
	s = h.Reopen(t, s)
	got, err := s.Get(ctx, nhs)
	if err != nil || !proto.Equal(got, p) {
		t.Fatalf("after restart Get = %v, %v", got, err)
	}
	if n := len(versions(t, s, nhs)); n != 2 {
		t.Fatalf("after restart versions = %d, want 2", n)
	}
	if r, _ := s.Revision(ctx); r != rev {
		t.Fatalf("after restart revision = %d, want %d", r, rev)
	}
	update(t, s, got, func(p *careplanv1.CarePlan) { p.WhatMatters = "after" })
	var v store.ChainVerifier
	for _, ev := range allAudit(t, s, store.AuditQuery{}) {
		if err := v.Next(ev); err != nil {
			t.Fatalf("audit chain across restart: %v", err)
		}
	}
	if v.Count != 3 {
		t.Fatalf("audit events = %d, want 3", v.Count)
	}
	if r, _ := s.Revision(ctx); r != rev+1 {
		t.Fatalf("revision after restart and write = %d, want %d", r, rev+1)
	}
}

func testConcurrentWriters(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	const writers = 32
	r0, _ := s.Revision(ctx)
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			nhs := fixture.NHSNumber(200 + i)
			p, err := s.Create(ctx, store.Write{Plan: fixture.Plan(nhs), Actor: trustActor, Audit: auditFor(trustActor, "Create")})
			if err == nil {
				next := proto.Clone(p).(*careplanv1.CarePlan)
				next.WhatMatters = "second"
				_, err = s.Update(ctx, store.Write{Plan: next, MatchEtag: p.GetEtag(), Actor: trustActor, Audit: auditFor(trustActor, "Update")})
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range writers {
		got, err := s.Get(ctx, fixture.NHSNumber(200+i))
		if err != nil || got.GetVersion() != 2 || got.GetWhatMatters() != "second" {
			t.Fatalf("plan %d after concurrent writes: %v, %v", i, got.GetVersion(), err)
		}
	}
	if r, _ := s.Revision(ctx); r != r0+2*writers {
		t.Fatalf("revision = %d, want %d", r, r0+2*writers)
	}
	evs, _ := s.Events(ctx, r0, 1000)
	for i, ev := range evs {
		if ev.GetRevision() != r0+int64(i)+1 {
			t.Fatalf("revision gap at %d", i)
		}
	}
	var v store.ChainVerifier
	for _, ev := range allAudit(t, s, store.AuditQuery{}) {
		if err := v.Next(ev); err != nil {
			t.Fatal(err)
		}
	}
}

// testConcurrentAudit appends audit events from many callers at once, as
// concurrent reads do, beside plan writes: every event is kept once, with
// gap-free sequences, and the chain verifies.
func testConcurrentAudit(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	const callers, calls = 32, 10
	var wg sync.WaitGroup
	errs := make(chan error, callers+1)
	for c := range callers {
		wg.Go(func() {
			for i := range calls {
				a := auditFor(trustActor, "Get")
				a.Subject = fmt.Sprintf("reader-%d", c)
				events := []*careplanv1.AuditEvent{a}
				if i%3 == 0 { // some calls record two events
					b := auditFor(trustActor, "List")
					b.Subject = a.Subject
					events = append(events, b)
				}
				if err := s.AppendAudit(ctx, events...); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 5 {
			if _, err := s.Create(ctx, store.Write{Plan: fixture.Plan(fixture.NHSNumber(300 + i)), Actor: trustActor, Audit: auditFor(trustActor, "Create")}); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	evs := allAudit(t, s, store.AuditQuery{})
	perCaller := calls + (calls+2)/3 // calls 0, 3, 6 and 9 add a second event
	if want := callers*perCaller + 5; len(evs) != want {
		t.Fatalf("audit events = %d, want %d", len(evs), want)
	}
	var v store.ChainVerifier
	bySubject := map[string]int{}
	for i, ev := range evs {
		if ev.GetSequence() != int64(i+1) {
			t.Fatalf("event %d has sequence %d", i, ev.GetSequence())
		}
		if err := v.Next(ev); err != nil {
			t.Fatal(err)
		}
		bySubject[ev.GetSubject()]++
	}
	for c := range callers {
		if n := bySubject[fmt.Sprintf("reader-%d", c)]; n != perCaller {
			t.Fatalf("reader-%d has %d events, want %d", c, n, perCaller)
		}
	}
}

// testConcurrentConflicts starts calls that contend for one plan at once,
// so that they share transactions (both stores group concurrent calls): a
// call must see what the calls before it in its transaction wrote, and a
// refused call must leave no trace while the others commit.
func testConcurrentConflicts(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	const n = 16
	// race runs call n times at once and returns the errors and results.
	race := func(call func(i int) (*careplanv1.CarePlan, error)) ([]error, []*careplanv1.CarePlan) {
		errs, out := make([]error, n), make([]*careplanv1.CarePlan, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { out[i], errs[i] = call(i) })
		}
		wg.Wait()
		return errs, out
	}
	// one checks that exactly one call succeeded and the rest were refused
	// with want, and returns the winner's result.
	one := func(what string, errs []error, out []*careplanv1.CarePlan, want error) *careplanv1.CarePlan {
		t.Helper()
		var won *careplanv1.CarePlan
		for i, err := range errs {
			switch {
			case err == nil && won == nil:
				won = out[i]
			case err == nil:
				t.Fatalf("%s: two calls succeeded", what)
			case !errors.Is(err, want):
				t.Fatalf("%s: %v, want %v", what, err, want)
			}
		}
		if won == nil {
			t.Fatalf("%s: no call succeeded", what)
		}
		return won
	}
	r0, _ := s.Revision(ctx)

	created := create(t, s, fixture.NHSNumber(400))
	errs, out := race(func(i int) (*careplanv1.CarePlan, error) {
		next := proto.Clone(created).(*careplanv1.CarePlan)
		next.WhatMatters = fmt.Sprintf("update %d", i)
		return s.Update(ctx, store.Write{Plan: next, MatchEtag: created.GetEtag(), Actor: trustActor, Audit: auditFor(trustActor, "Update")})
	})
	won := one("updates on one etag", errs, out, store.ErrEtagMismatch)
	got, err := s.Get(ctx, created.GetNhsNumber())
	if err != nil || got.GetVersion() != 2 || got.GetWhatMatters() != won.GetWhatMatters() {
		t.Fatalf("after the updates: version %d %q, %v; want version 2 %q", got.GetVersion(), got.GetWhatMatters(), err, won.GetWhatMatters())
	}

	nhs := fixture.NHSNumber(401)
	errs, out = race(func(int) (*careplanv1.CarePlan, error) {
		return s.Create(ctx, store.Write{Plan: fixture.Plan(nhs), Actor: trustActor, Audit: auditFor(trustActor, "Create")})
	})
	one("creates of one plan", errs, out, store.ErrAlreadyExists)

	retried := fixture.NHSNumber(402)
	errs, out = race(func(int) (*careplanv1.CarePlan, error) {
		return s.Create(ctx, store.Write{Plan: fixture.Plan(retried), Actor: trustActor, RequestKey: "nurse-1/create/race", Audit: auditFor(trustActor, "Create")})
	})
	for i, err := range errs {
		if err != nil || out[i].GetVersion() != 1 || out[i].GetEtag() != out[0].GetEtag() {
			t.Fatalf("retries of one request: call %d got %v, %v; want every call to get version 1 with one etag", i, out[i], err)
		}
	}

	// Revisions: one create, one update, one create, one create.
	if r, _ := s.Revision(ctx); r != r0+4 {
		t.Fatalf("revision = %d, want %d: a refused call wrote a revision", r, r0+4)
	}
	for nhs, want := range map[string]int{created.GetNhsNumber(): 2, fixture.NHSNumber(401): 1, retried: 1} {
		if got := len(versions(t, s, nhs)); got != want {
			t.Fatalf("%s has %d versions, want %d", nhs, got, want)
		}
	}
	// Only successful writes record an event here (the server audits
	// refusals itself); every retry of a request key is a success.
	wantAudit := map[string]int{created.GetNhsNumber(): 2, fixture.NHSNumber(401): 1, retried: n}
	var v store.ChainVerifier
	for _, ev := range allAudit(t, s, store.AuditQuery{}) {
		if err := v.Next(ev); err != nil {
			t.Fatal(err)
		}
		wantAudit[ev.GetNhsNumber()]--
	}
	for nhs, left := range wantAudit {
		if left != 0 {
			t.Fatalf("%s: %d audit events more or fewer than expected", nhs, left)
		}
	}
}

// testInvalidRecord appends an audit event that cannot be encoded (a string
// that is not UTF-8) beside good ones: it fails alone with ErrInvalidRecord,
// the others are kept, and the store stays healthy (it is the call's fault).
func testInvalidRecord(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	var mu sync.Mutex
	var health []bool
	if hr, ok := s.(store.HealthReporter); ok {
		hr.OnHealthChange(func(ok bool) {
			mu.Lock()
			defer mu.Unlock()
			health = append(health, ok)
		})
	}
	const good = 8
	errs := make(chan error, good)
	var wg sync.WaitGroup
	var badErr error
	wg.Go(func() {
		bad := auditFor(trustActor, "Get")
		bad.AccessReason = "not UTF-8: \xff"
		badErr = s.AppendAudit(ctx, bad)
	})
	for range good {
		wg.Go(func() { errs <- s.AppendAudit(ctx, auditFor(trustActor, "Get")) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a good event beside a bad one: %v", err)
		}
	}
	if !errors.Is(badErr, store.ErrInvalidRecord) || errors.Is(badErr, store.ErrUnavailable) {
		t.Fatalf("an event that cannot be encoded: %v, want ErrInvalidRecord (not ErrUnavailable)", badErr)
	}
	if evs := allAudit(t, s, store.AuditQuery{}); len(evs) != good {
		t.Fatalf("audit events = %d, want the %d good ones", len(evs), good)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(health) != 0 {
		t.Fatalf("health changed %v over one call's bad record; want it left alone", health)
	}
}

// testNoLostUpdates runs read-modify-write loops on one plan: every
// successful write must be present and the final version must be 1 plus the
// successes.
func testNoLostUpdates(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	nhs := fixture.NHSNumber(300)
	create(t, s, nhs)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 10 {
				for {
					cur, err := s.Get(ctx, nhs)
					if err != nil {
						t.Error(err)
						return
					}
					next := proto.Clone(cur).(*careplanv1.CarePlan)
					next.KeyContacts = append(next.KeyContacts, &careplanv1.KeyContact{Name: fmt.Sprintf("w%d-%d", w, i)})
					_, err = s.Update(ctx, store.Write{Plan: next, MatchEtag: cur.GetEtag(), Actor: trustActor})
					if errors.Is(err, store.ErrEtagMismatch) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					ok.Add(1)
					break
				}
			}
		})
	}
	wg.Wait()
	got, _ := s.Get(ctx, nhs)
	if got.GetVersion() != 1+ok.Load() || ok.Load() != 80 {
		t.Fatalf("final version %d after %d successful writes", got.GetVersion(), ok.Load())
	}
	names := map[string]bool{}
	for _, c := range got.GetKeyContacts() {
		names[c.GetName()] = true
	}
	for w := range 8 {
		for i := range 10 {
			if !names[fmt.Sprintf("w%d-%d", w, i)] {
				t.Fatalf("change w%d-%d was lost", w, i)
			}
		}
	}
}

func testCanceled(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	nhs := fixture.NHSNumber(301)
	if _, err := s.Create(ctx, store.Write{Plan: fixture.Plan(nhs), Actor: trustActor}); err == nil {
		t.Fatal("Create with a canceled context succeeded")
	}
	if _, err := s.Get(context.Background(), nhs); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a canceled Create was written: %v", err)
	}
}

func clearServerFields(p *careplanv1.CarePlan) {
	p.Version, p.Etag = 0, ""
	p.CreateTime, p.UpdateTime, p.CreatedBy, p.UpdatedBy = nil, nil, nil, nil
}

func nowpb() *timestamppb.Timestamp { return timestamppb.Now() }
