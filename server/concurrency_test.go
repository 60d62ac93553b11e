package server_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// TestNoLostUpdates: the trust and the council each run read-modify-write
// loops on one plan through the client's Modify helper, which retries on
// ABORTED. Every successful change must be in the final plan, and the final
// version must be 1 + the successful writes.
func TestNoLostUpdates(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(90)
	e.seed(nhs) // version 2: the council's activity added
	const perWriter = 15
	writers := []struct {
		who    caller
		change func(p *careplanv1.CarePlan, mark string)
	}{
		// The coordinator's organisation owns the key contacts…
		{trustUser, func(p *careplanv1.CarePlan, mark string) {
			p.KeyContacts = append(p.KeyContacts, &careplanv1.KeyContact{Name: mark})
		}},
		// …and the council owns its home-care activity's schedule.
		{council, func(p *careplanv1.CarePlan, mark string) {
			for _, a := range p.GetActivities() {
				if a.GetProvider().GetOdsCode() == fixture.CouncilOrg {
					a.Schedule += " " + mark
				}
			}
		}},
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for w, wr := range writers {
		for g := range 2 { // two callers per organisation
			wg.Go(func() {
				c, err := client.Dial(context.Background(), e.Addr, client.WithToken(e.Token(wr.who)))
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				for i := range perWriter {
					mark := fmt.Sprintf("w%d.%d.%d", w, g, i)
					_, err := c.Modify(context.Background(), nhs, func(p *careplanv1.CarePlan) error {
						wr.change(p, mark)
						return nil
					}, client.MaxAttempts(100))
					if err != nil {
						t.Errorf("%s: %v", mark, err)
						return
					}
					ok.Add(1)
				}
			})
		}
	}
	wg.Wait()
	got, err := e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 4*perWriter || got.GetVersion() != 2+ok.Load() {
		t.Fatalf("final version %d after %d successful writes (from version 2)", got.GetVersion(), ok.Load())
	}
	var schedule string
	for _, a := range got.GetActivities() {
		schedule += a.GetSchedule()
	}
	var names []string
	for _, k := range got.GetKeyContacts() {
		names = append(names, k.GetName())
	}
	for g := range 2 {
		for i := range perWriter {
			if m := fmt.Sprintf("w0.%d.%d", g, i); !slices.Contains(names, m) {
				t.Fatalf("the trust's change %s was lost", m)
			}
			if m := fmt.Sprintf("w1.%d.%d", g, i); !containsWord(schedule, m) {
				t.Fatalf("the council's change %s was lost", m)
			}
		}
	}
	t.Logf("%d concurrent read-modify-writes, final version %d, none lost", ok.Load(), got.GetVersion())
}

func containsWord(s, w string) bool { return slices.Contains(strings.Fields(s), w) }

// TestAmbiguousRetry: the response to a write is lost on the way back (the
// client sees UNAVAILABLE though the server committed). Retrying with the
// same request_id applies the change once and returns the first result.
func TestAmbiguousRetry(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(91)
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	var dropped atomic.Bool
	dropFirstResponse := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil && method == careplanv1.CarePlanService_UpdateCarePlan_FullMethodName && dropped.CompareAndSwap(false, true) {
			proto.Reset(reply.(proto.Message))
			return status.Error(codes.Unavailable, "connection reset (response dropped by the test)")
		}
		return err
	}
	conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(dropFirstResponse))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	plans := careplanv1.NewCarePlanServiceClient(conn)
	change := &careplanv1.CarePlan{NhsNumber: nhs, Etag: v1.GetEtag(), WhatMatters: "applied once"}
	req := &careplanv1.UpdateCarePlanRequest{CarePlan: change, RequestId: "update-after-a-lost-reply"}
	if _, err := plans.UpdateCarePlan(e.as(trustUser), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("first attempt: %v, want the dropped response", err)
	}
	got, err := plans.UpdateCarePlan(e.as(trustUser), req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got.GetVersion() != 2 || got.GetWhatMatters() != "applied once" {
		t.Fatalf("retry returned version %d", got.GetVersion())
	}
	if n := e.versionCount(nhs); n != 2 {
		t.Fatalf("versions = %d, want 2: the retried write applied twice", n)
	}
}
