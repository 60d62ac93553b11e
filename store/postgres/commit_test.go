package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/postgres/pgtest"
)

// commitLog records the group commits a store reports.
type commitLog struct {
	mu     sync.Mutex
	groups []int // calls per successful commit
	failed int
}

func (c *commitLog) ObserveCommit(ops int, _ time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.failed++
		return
	}
	c.groups = append(c.groups, ops)
}

func (c *commitLog) take() (groups []int, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	groups, failed = c.groups, c.failed
	c.groups, c.failed = nil, 0
	return groups, failed
}

// TestGroupCommit: concurrent calls share transactions, refusals among
// them included, without any group failing; a call whose SQL fails is
// retried alone and fails alone.
func TestGroupCommit(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	var log commitLog
	s, err := Open(context.Background(), dsn, Options{Observer: &log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	trust := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg, OrgType: careplanv1.Organisation_TYPE_NHS}
	created, err := s.Create(ctx, store.Write{Plan: fixture.Plan(fixture.NHSNumber(1)), Actor: trust})
	if err != nil {
		t.Fatal(err)
	}
	log.take()

	// run starts n calls at once and returns their errors.
	run := func(n int, call func(i int) error) []error {
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = call(i)
			})
		}
		close(start)
		wg.Wait()
		return errs
	}

	const calls = 32
	errs := run(calls, func(i int) error {
		if i%2 == 0 {
			return s.AppendAudit(ctx, &careplanv1.AuditEvent{Method: "Get", Subject: "reader"})
		}
		next := proto.Clone(created).(*careplanv1.CarePlan)
		next.WhatMatters = "raced"
		_, err := s.Update(ctx, store.Write{Plan: next, MatchEtag: created.GetEtag(), Actor: trust})
		return err
	})
	updated := 0
	for i, err := range errs {
		switch {
		case err == nil && i%2 == 1:
			updated++
		case err != nil && (i%2 == 0 || !errors.Is(err, store.ErrEtagMismatch)):
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if updated != 1 {
		t.Fatalf("%d updates on one etag succeeded, want 1", updated)
	}
	groups, failed := log.take()
	total := 0
	for _, g := range groups {
		total += g
	}
	if failed != 0 || total != calls || slices.Max(groups) < 2 {
		t.Fatalf("commits: %v (%d calls), %d failed; want the %d calls in groups, none failed", groups, total, failed, calls)
	}

	// A call whose statement fails on what it sent aborts its group's
	// transaction; the others are retried alone and commit, and the store
	// still reports itself healthy.
	var healthChanges []bool
	s.OnHealthChange(func(ok bool) { healthChanges = append(healthChanges, ok) })
	bad := errors.New("unset")
	errs = run(8, func(i int) error {
		if i == 0 {
			err := s.write(ctx, func(w *writeTx) error {
				var x int
				return w.queryRow(`SELECT 1 / (SELECT count(*) FROM counters WHERE false)`).Scan(&x)
			})
			bad = err
			return nil
		}
		return s.AppendAudit(ctx, &careplanv1.AuditEvent{Method: "Get", Subject: "reader"})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d beside a failing one: %v", i, err)
		}
	}
	if !errors.Is(bad, store.ErrUnavailable) || !strings.Contains(bad.Error(), "division by zero") {
		t.Fatalf("the failing call got %v, want ErrUnavailable for the division by zero", bad)
	}
	if len(healthChanges) != 0 || !s.writable.Load() {
		t.Fatalf("health changed %v after one call's bad statement; want it left healthy", healthChanges)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM audit`).Scan(&n); err != nil || n != calls/2+7 {
		t.Fatalf("audit rows = %d, %v; want %d", n, err, calls/2+7)
	}
}
