package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store/postgres/pgtest"
)

// TestTwoReplicasOnPostgres runs two servers on one PostgreSQL database
// (sharing the dev key, as replicas share their trust configuration): a
// write through A is read through B at once, a stale etag through B after a
// write through A is ABORTED, and B's watch delivers A's changes in order.
func TestTwoReplicasOnPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := startServer(t, "--store", dsn)
	b := startServer(t, "--store", dsn, "--data", a.data) // same dev key as A
	pa, pb := a.plans(), b.plans()
	nhs := fixture.NHSNumber(7)

	stream, err := pb.WatchCarePlans(b.as("COUNCIL"), &careplanv1.WatchCarePlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := pa.CreateCarePlan(a.as("NHS"), &careplanv1.CreateCarePlanRequest{CarePlan: fixture.TrustPlan(nhs)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := pb.GetCarePlan(b.as("COUNCIL"), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	if err != nil || !proto.Equal(got, v1) {
		t.Fatalf("read through B right after a write through A: %v, %v", got.GetVersion(), err)
	}
	change := proto.Clone(v1).(*careplanv1.CarePlan)
	change.WhatMatters = "through A"
	if _, err := pa.UpdateCarePlan(a.as("NHS"), &careplanv1.UpdateCarePlanRequest{CarePlan: change}); err != nil {
		t.Fatal(err)
	}
	stale := proto.Clone(v1).(*careplanv1.CarePlan)
	stale.WhatMatters = "through B, from v1"
	_, err = pb.UpdateCarePlan(b.as("NHS"), &careplanv1.UpdateCarePlanRequest{CarePlan: stale})
	if status.Code(err) != codes.Aborted {
		t.Fatalf("stale etag through the other replica: %v, want ABORTED", err)
	}
	for want := int64(1); want <= 2; want++ {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetRevision() != want || ev.GetCarePlan().GetVersion() != want {
			t.Fatalf("B's watch: revision %d version %d, want %d", ev.GetRevision(), ev.GetCarePlan().GetVersion(), want)
		}
	}
	// The chain written by both replicas verifies.
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := verifyAudit(ctx, []string{"--store", dsn}, &out, &out); err != nil {
		t.Fatalf("verify-audit --store: %v (%s)", err, out.String())
	}
}
