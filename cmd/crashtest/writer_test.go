package main

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// TestLateLanding: a write in doubt that lands after the writer re-read the
// plan explains one conflict; any other newer version is still an error.
func TestLateLanding(t *testing.T) {
	s := testserver.Start(t)
	cl := s.Client(t, testserver.TrustUser)
	ctx := context.Background()
	w := newWriter(0, "t")
	p := w.plans[0]

	// landBehind stores marker as the next version, without the writer
	// knowing: the in-doubt write's commit arriving late.
	landBehind := func(marker string) {
		t.Helper()
		if _, err := cl.Update(ctx, &careplanv1.CarePlan{NhsNumber: p.nhs, Etag: p.etag, WhatMatters: marker}, []string{"what_matters"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	conflict := func() error {
		t.Helper()
		_, err := w.write(ctx, cl, p, "next")
		if !errors.Is(err, client.ErrEtagMismatch) {
			t.Fatalf("write on a stale etag: %v, want ErrEtagMismatch", err)
		}
		return err
	}

	if _, err := w.write(ctx, cl, p, "first"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.sync(ctx, cl, p); err != nil {
		t.Fatal(err)
	}
	p.inDoubt = "in-doubt-1"
	landBehind("in-doubt-1")
	if err := w.lateLanding(ctx, cl, p, conflict()); err != nil {
		t.Fatalf("the write in doubt landed late: %v, want no error", err)
	}
	if p.version != 2 || p.inDoubt != "" {
		t.Fatalf("after the late landing the writer holds version %d, in doubt %q; want 2 and none", p.version, p.inDoubt)
	}
	if _, err := w.write(ctx, cl, p, "after"); err != nil {
		t.Fatalf("write after resync: %v", err)
	}
	if _, err := w.sync(ctx, cl, p); err != nil {
		t.Fatal(err)
	}

	// Someone else's write is not explained by the write in doubt.
	p.inDoubt = "in-doubt-2"
	landBehind("someone-else")
	err := w.lateLanding(ctx, cl, p, conflict())
	if err == nil || !strings.Contains(err.Error(), "not the write in doubt") {
		t.Fatalf("a conflict from another write: %v, want an error naming the write in doubt", err)
	}
}
