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

// writerOnServer starts a server and returns a client of it and a writer
// whose plans do not exist yet.
func writerOnServer(t *testing.T) (*client.Client, *writer) {
	t.Helper()
	return testserver.Start(t).Client(t, testserver.TrustUser), newWriter(0, "t")
}

// TestLateLanding: a write in doubt that lands after the writer re-read the
// plan explains one conflict; any other newer version is still an error,
// including a second version that merely repeats the settled write's
// marker.
func TestLateLanding(t *testing.T) {
	cl, w := writerOnServer(t)
	ctx := context.Background()
	p := w.plans[0]

	// behind stores a change as the next version without the writer
	// knowing: the in-doubt write's commit arriving late, or a version no
	// write explains.
	behind := func(change *careplanv1.CarePlan, paths ...string) {
		t.Helper()
		cur, err := cl.Get(ctx, p.nhs)
		if err != nil {
			t.Fatal(err)
		}
		change.NhsNumber, change.Etag = p.nhs, cur.GetEtag()
		if _, err := cl.Update(ctx, change, paths, ""); err != nil {
			t.Fatal(err)
		}
	}
	land := func(marker string) { behind(&careplanv1.CarePlan{WhatMatters: marker}, "what_matters") }
	conflict := func() error {
		t.Helper()
		_, err := w.write(ctx, cl, p, "next")
		if !errors.Is(err, client.ErrEtagMismatch) {
			t.Fatalf("write on a stale etag: %v, want ErrEtagMismatch", err)
		}
		return err
	}
	resync := func() error {
		t.Helper()
		return w.resync(ctx, cl, p)
	}
	doubt := func(marker string) { p.inDoubt, p.inDoubtBase = []string{marker}, p.version }

	first, err := w.write(ctx, cl, p, "first")
	if err != nil {
		t.Fatal(err)
	}
	p.etag, p.version = first.GetEtag(), first.GetVersion()
	if err := resync(); err != nil {
		t.Fatal(err)
	}

	// The write in doubt lands after the resync: one conflict, explained.
	doubt("in-doubt-1")
	land("in-doubt-1")
	if err := w.lateLanding(ctx, cl, p, conflict()); err != nil {
		t.Fatalf("the write in doubt landed late: %v, want no error", err)
	}
	if p.version != 2 || len(p.inDoubt) != 0 {
		t.Fatalf("after the late landing the writer holds version %d, in doubt %q; want 2 and none", p.version, p.inDoubt)
	}

	// It lands before the resync, which settles it; a later version that
	// repeats its marker (a write applied twice) is explained by nothing.
	doubt("in-doubt-2")
	land("in-doubt-2")
	if err := resync(); err != nil || len(p.inDoubt) != 0 {
		t.Fatalf("resync after the write in doubt landed: %v, in doubt %q; want it settled", err, p.inDoubt)
	}
	behind(&careplanv1.CarePlan{SharingObjection: true}, "sharing_objection")
	if err := resync(); err == nil {
		t.Fatal("resync accepted a version that repeats a settled write's marker")
	}

	// Someone else's write is not explained by a write in doubt.
	doubt("in-doubt-3")
	land("someone-else")
	err = w.lateLanding(ctx, cl, p, conflict())
	if err == nil || !strings.Contains(err.Error(), "write in doubt") {
		t.Fatalf("a conflict from another write: %v, want an error naming the write in doubt", err)
	}
}

// TestVerifyHistory: a version no write made, or one write's marker stored
// twice, fails verification, though no acknowledged write is missing.
func TestVerifyHistory(t *testing.T) {
	cl, w := writerOnServer(t)
	ctx := context.Background()
	p := w.plans[0]
	var acked []write
	step := func(marker string) {
		t.Helper()
		stored, err := w.write(ctx, cl, p, marker)
		if err != nil {
			t.Fatal(err)
		}
		p.etag, p.version = stored.GetEtag(), stored.GetVersion()
		acked = append(acked, write{nhs: p.nhs, version: p.version, marker: marker})
	}
	step("m1")
	step("m2")
	if _, err := verify(ctx, cl, acked, nil, nil); err != nil {
		t.Fatalf("a clean history: %v", err)
	}
	step("m1") // the same marker again, as a write applied twice would leave
	acked = acked[:2]
	if _, err := verify(ctx, cl, acked, nil, nil); err == nil || !strings.Contains(err.Error(), "stored twice") {
		t.Fatalf("a marker stored twice: %v, want an error", err)
	}

	// On the writer's other plan: a version whose marker no write carried.
	p = w.plans[1]
	acked = nil
	step("n1")
	step("n2")
	earlier := []write{{nhs: p.nhs, marker: "n2"}} // left in doubt, then landed
	if _, err := verify(ctx, cl, acked[:1], nil, earlier); err != nil {
		t.Fatalf("a version made by a write in doubt in an earlier cycle: %v", err)
	}
	if _, err := verify(ctx, cl, acked[:1], nil, nil); err == nil || !strings.Contains(err.Error(), "no write made") {
		t.Fatalf("a version no write made: %v, want an error", err)
	}
}
