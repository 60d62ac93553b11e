package storetest

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// testBoundedReads: EventsWithin, ListVersionsWithin and PlanQuery.MaxBytes
// cut where store.Budget says (the first item always, then items while the
// stored bytes stay within the bound), and paging through the cuts returns
// every item exactly once.
func testBoundedReads(t *testing.T, h Harness) {
	s := h.Open(t)
	ctx := context.Background()
	r0, _ := s.Revision(ctx)
	// Versions of growing size, 1 to 8 KB, on one plan; then a large plan
	// and two small ones.
	nhs := fixture.NHSNumber(140)
	cur := create(t, s, nhs)
	for i := 1; i <= 7; i++ {
		cur = update(t, s, cur, func(p *careplanv1.CarePlan) { p.WhatMatters = strings.Repeat("v", i*1000) })
	}
	big := fixture.Plan(fixture.NHSNumber(141))
	big.WhatMatters = strings.Repeat("b", 20000)
	for _, p := range []*careplanv1.CarePlan{big, fixture.Plan(fixture.NHSNumber(142)), fixture.Plan(fixture.NHSNumber(143))} {
		if _, err := s.Create(ctx, store.Write{Plan: p, Actor: trustActor, Audit: auditFor(trustActor, "Create")}); err != nil {
			t.Fatal(err)
		}
	}
	all := versions(t, s, nhs)
	if len(all) != 8 {
		t.Fatalf("versions = %d, want 8", len(all))
	}
	const budget = 10000

	t.Run("versions", func(t *testing.T) {
		var after int64
		for pages := 0; ; pages++ {
			page, more, err := s.ListVersionsWithin(ctx, nhs, after, 100, budget)
			if err != nil || len(page) == 0 {
				t.Fatalf("ListVersionsWithin(after %d) = %d versions, %v", after, len(page), err)
			}
			size := 0
			for i, v := range page {
				if v.GetVersion() != after+int64(i)+1 {
					t.Fatalf("after %d: version %d at %d", after, v.GetVersion(), i)
				}
				size += proto.Size(v)
			}
			if len(page) > 1 && size > budget {
				t.Fatalf("page after %d holds %d bytes, over %d", after, size, budget)
			}
			after = page[len(page)-1].GetVersion()
			if after < int64(len(all)) && size+proto.Size(all[after]) <= budget {
				t.Fatalf("page after %d stopped at %d bytes though version %d fitted", after, size, after+1)
			}
			if more != (after < int64(len(all))) {
				t.Fatalf("more = %v after version %d of %d", more, after, len(all))
			}
			if !more {
				break
			}
			if pages > len(all) {
				t.Fatal("paging does not end")
			}
		}
		// A bound below one version still returns it; the row limit still
		// holds; no bound returns them all.
		if page, more, _ := s.ListVersionsWithin(ctx, nhs, 0, 100, 1); len(page) != 1 || !more {
			t.Fatalf("bound of 1 byte: %d versions, more %v; want 1, true", len(page), more)
		}
		if page, more, _ := s.ListVersionsWithin(ctx, nhs, 0, 3, 1<<20); len(page) != 3 || !more {
			t.Fatalf("limit 3: %d versions, more %v", len(page), more)
		}
		if page, more, _ := s.ListVersionsWithin(ctx, nhs, 0, 100, 0); len(page) != 8 || more {
			t.Fatalf("no bound: %d versions, more %v", len(page), more)
		}
	})

	t.Run("events", func(t *testing.T) {
		after, seen := r0, 0
		for calls := 0; ; calls++ {
			evs, err := s.EventsWithin(ctx, after, 100, budget)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			size := 0
			for i, ev := range evs {
				if ev.GetRevision() != after+int64(i)+1 || ev.GetCarePlan().GetNhsNumber() == "" {
					t.Fatalf("after %d: revision %d at %d", after, ev.GetRevision(), i)
				}
				size += proto.Size(ev.GetCarePlan())
			}
			if len(evs) > 1 && size > budget {
				t.Fatalf("events after %d hold %d bytes of plans, over %d", after, size, budget)
			}
			seen += len(evs)
			after = evs[len(evs)-1].GetRevision()
			if calls > 10 {
				t.Fatal("reading does not end")
			}
		}
		if seen != 11 {
			t.Fatalf("read %d events, want 11 exactly once", seen)
		}
		if evs, _ := s.EventsWithin(ctx, r0+8, 100, 1); len(evs) != 1 || evs[0].GetCarePlan().GetNhsNumber() != big.GetNhsNumber() {
			t.Fatalf("bound below one event: %d events, want the large one", len(evs))
		}
		if evs, _ := s.EventsWithin(ctx, r0, 100, 0); len(evs) != 11 {
			t.Fatalf("no bound: %d events, want 11", len(evs))
		}
	})

	t.Run("plans", func(t *testing.T) {
		q := store.PlanQuery{Org: fixture.TrustOrg, Limit: 100, MaxBytes: 15000}
		var got []int
		for pages := 0; ; pages++ {
			page, next, err := s.ListPlans(ctx, q)
			if err != nil || len(page) == 0 {
				t.Fatalf("ListPlans = %d plans, %v", len(page), err)
			}
			size := 0
			for _, p := range page {
				size += len(p.Body)
			}
			if len(page) > 1 && size > q.MaxBytes {
				t.Fatalf("page of %d plans holds %d bytes, over %d", len(page), size, q.MaxBytes)
			}
			got = append(got, len(page))
			if next == "" {
				break
			}
			if next != page[len(page)-1].NhsNumber || pages > 3 {
				t.Fatalf("next = %q after a page ending at %q", next, page[len(page)-1].NhsNumber)
			}
			q.After = next
		}
		// 140 (9 KB), 141 (21 KB), 142 and 143 (1 KB each): the large
		// plan is a page of its own, the small ones share one.
		if len(got) != 3 || got[0] != 1 || got[1] != 1 || got[2] != 2 {
			t.Fatalf("page sizes = %v, want [1 1 2]", got)
		}
	})
}
