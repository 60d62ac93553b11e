package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/client/clienttest"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

const nhs = "9434765919"

func dial(t *testing.T, srv *clienttest.Server, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(t.Context(), srv.Addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func samplePlan() *careplanv1.CarePlan {
	return &careplanv1.CarePlan{
		NhsNumber:   nhs,
		Person:      &careplanv1.Person{GivenName: "Ada", FamilyName: "Example", BirthDate: "1941-03-02"},
		Status:      careplanv1.CarePlan_STATUS_ACTIVE,
		WhatMatters: "Staying at home with my cat.",
	}
}

// callsTo returns the requests the fake received for one method.
func callsTo[T any](srv *clienttest.Server, method string) []T {
	var out []T
	for _, c := range srv.Calls() {
		if c.Method == "/careplan.v1.CarePlanService/"+method {
			out = append(out, c.Request.(T))
		}
	}
	return out
}

func TestFromError(t *testing.T) {
	plain := errors.New("not a status")
	tests := []struct {
		name        string
		in          error
		wantCode    codes.Code
		wantReason  string
		wantFields  []string
		wantEtag    string
		passThrough bool
	}{
		{
			name:       "bad request fields",
			in:         clienttest.Status(codes.InvalidArgument, "INVALID_ARGUMENT", "invalid care plan", nil, "nhs_number", "person.birth_date"),
			wantCode:   codes.InvalidArgument,
			wantReason: "INVALID_ARGUMENT",
			wantFields: []string{"nhs_number", "person.birth_date"},
		},
		{
			name:       "etag mismatch",
			in:         clienttest.Status(codes.Aborted, "ETAG_MISMATCH", "stale", map[string]string{"current_etag": `W/"7"`}),
			wantCode:   codes.Aborted,
			wantReason: "ETAG_MISMATCH",
			wantEtag:   `W/"7"`,
		},
		{
			name:       "forbidden change",
			in:         clienttest.Status(codes.PermissionDenied, "FIELD_NOT_PERMITTED", "denied", nil, "coordinator"),
			wantCode:   codes.PermissionDenied,
			wantReason: "FIELD_NOT_PERMITTED",
			wantFields: []string{"coordinator"},
		},
		{
			name:     "status without details",
			in:       status.Error(codes.Unavailable, "connection refused"),
			wantCode: codes.Unavailable,
		},
		{name: "nil", in: nil, passThrough: true},
		{name: "plain error", in: plain, passThrough: true},
		{name: "context error", in: fmt.Errorf("wait: %w", context.Canceled), passThrough: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := client.FromError(tt.in)
			if tt.passThrough {
				if got != tt.in {
					t.Fatalf("FromError(%v) = %v, want it unchanged", tt.in, got)
				}
				return
			}
			var e *client.Error
			if !errors.As(got, &e) {
				t.Fatalf("FromError = %T, want *client.Error", got)
			}
			if e.Code != tt.wantCode || e.Reason != tt.wantReason || !slices.Equal(e.Fields, tt.wantFields) || e.CurrentEtag() != tt.wantEtag {
				t.Errorf("got code=%v reason=%q fields=%q etag=%q, want %v %q %q %q",
					e.Code, e.Reason, e.Fields, e.CurrentEtag(), tt.wantCode, tt.wantReason, tt.wantFields, tt.wantEtag)
			}
			if e.Message == "" {
				t.Error("Message is empty")
			}
			if status.Code(got) != tt.wantCode {
				t.Errorf("status.Code = %v, want %v (GRPCStatus)", status.Code(got), tt.wantCode)
			}
			if again := client.FromError(got); again != got {
				t.Error("FromError of an *Error changed it")
			}
		})
	}
}

func TestErrorsIs(t *testing.T) {
	sentinels := []error{
		client.ErrNotFound, client.ErrAlreadyExists, client.ErrEtagMismatch, client.ErrPermissionDenied,
		client.ErrInvalidArgument, client.ErrUnauthenticated, client.ErrUnavailable,
	}
	tests := []struct {
		code codes.Code
		want error
	}{
		{codes.NotFound, client.ErrNotFound},
		{codes.AlreadyExists, client.ErrAlreadyExists},
		{codes.Aborted, client.ErrEtagMismatch},
		{codes.PermissionDenied, client.ErrPermissionDenied},
		{codes.InvalidArgument, client.ErrInvalidArgument},
		{codes.Unauthenticated, client.ErrUnauthenticated},
		{codes.Unavailable, client.ErrUnavailable},
		{codes.Internal, nil},
		{codes.DeadlineExceeded, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			err := fmt.Errorf("wrapped: %w", client.FromError(status.Error(tt.code, "x")))
			for _, s := range append(sentinels, context.DeadlineExceeded) {
				if got := errors.Is(err, s); got != (s == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, got)
				}
			}
		})
	}
}

func TestGetDecodesServerError(t *testing.T) {
	c := dial(t, clienttest.Start(t))
	_, err := c.Get(t.Context(), nhs)
	var e *client.Error
	if !errors.Is(err, client.ErrNotFound) || !errors.As(err, &e) || e.Reason != "PLAN_NOT_FOUND" {
		t.Fatalf("Get of a missing plan = %v, want ErrNotFound with reason PLAN_NOT_FOUND", err)
	}
}

func TestCreateGetUpdate(t *testing.T) {
	srv := clienttest.Start(t)
	c := dial(t, srv)
	ctx := t.Context()

	created, err := c.Create(ctx, samplePlan(), "req-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, samplePlan(), "req-2"); !errors.Is(err, client.ErrAlreadyExists) {
		t.Fatalf("second Create = %v, want ErrAlreadyExists", err)
	}
	got, err := c.Get(ctx, nhs)
	if err != nil || got.GetEtag() != created.GetEtag() {
		t.Fatalf("Get = %v, %v; want etag %q", got, err, created.GetEtag())
	}

	got.WhatMatters = "Getting to the allotment."
	if _, err := c.Update(ctx, got, nil, ""); err != nil {
		t.Fatal(err)
	}
	got.WhatMatters = "stale"
	_, err = c.Update(ctx, got, []string{"what_matters"}, "req-3")
	var e *client.Error
	if !errors.As(err, &e) || !errors.Is(err, client.ErrEtagMismatch) || e.CurrentEtag() == "" || e.CurrentEtag() == got.GetEtag() {
		t.Fatalf("stale Update = %v, want ErrEtagMismatch carrying the new etag", err)
	}

	updates := callsTo[*careplanv1.UpdateCarePlanRequest](srv, "UpdateCarePlan")
	if len(updates) != 2 {
		t.Fatalf("server saw %d updates, want 2", len(updates))
	}
	if updates[0].GetUpdateMask() != nil {
		t.Errorf("Update with nil paths sent mask %v, want none (implied mask)", updates[0].GetUpdateMask())
	}
	if m := updates[1].GetUpdateMask().GetPaths(); !slices.Equal(m, []string{"what_matters"}) || updates[1].GetRequestId() != "req-3" {
		t.Errorf("second update sent mask %q request_id %q", m, updates[1].GetRequestId())
	}
}

func TestModify(t *testing.T) {
	const newText = "Walking to the shop on my own."
	tests := []struct {
		name       string
		collisions int // writes by someone else that land just before ours
		attempts   int
		fnErr      error
		wantErr    error
		wantFnRuns int
	}{
		{name: "no contention", wantFnRuns: 1},
		{name: "retries after one ABORTED", collisions: 1, wantFnRuns: 2},
		{name: "gives up after MaxAttempts", collisions: 100, attempts: 3, wantErr: client.ErrEtagMismatch, wantFnRuns: 3},
		{name: "fn error stops", fnErr: errors.New("nothing to do"), wantFnRuns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := clienttest.Start(t)
			srv.Put(samplePlan())
			srv.ConcurrentWrites(tt.collisions)
			c := dial(t, srv)

			var runs int
			var etagsSeen []string
			fn := func(p *careplanv1.CarePlan) error {
				runs++
				etagsSeen = append(etagsSeen, p.GetEtag())
				p.WhatMatters = newText
				return tt.fnErr
			}
			var opts []client.ModifyOption
			if tt.attempts > 0 {
				opts = append(opts, client.MaxAttempts(tt.attempts))
			}
			got, err := c.Modify(t.Context(), nhs, fn, opts...)

			if runs != tt.wantFnRuns {
				t.Errorf("fn ran %d times, want %d", runs, tt.wantFnRuns)
			}
			updates := callsTo[*careplanv1.UpdateCarePlanRequest](srv, "UpdateCarePlan")
			switch {
			case tt.fnErr != nil:
				if err != tt.fnErr || len(updates) != 0 {
					t.Fatalf("Modify = %v after %d updates, want fn's error and no update", err, len(updates))
				}
				return
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) || got != nil {
					t.Fatalf("Modify = %v, %v; want %v", got, err, tt.wantErr)
				}
			case err != nil:
				t.Fatalf("Modify: %v", err)
			default:
				if got.GetWhatMatters() != newText || got.GetEtag() == "" {
					t.Errorf("Modify returned %v, want the stored plan with the change", got)
				}
				if want := etagsSeen[len(etagsSeen)-1]; updates[len(updates)-1].GetCarePlan().GetEtag() != want {
					t.Errorf("last update sent etag %q, want the one last read, %q", updates[len(updates)-1].GetCarePlan().GetEtag(), want)
				}
			}
			if len(updates) != tt.wantFnRuns {
				t.Errorf("server saw %d updates, want %d", len(updates), tt.wantFnRuns)
			}
			ids := map[string]bool{}
			for _, u := range updates {
				if m := u.GetUpdateMask().GetPaths(); !slices.Equal(m, []string{"*"}) {
					t.Errorf("update mask = %q, want [*]", m)
				}
				ids[u.GetRequestId()] = true
			}
			if len(ids) != len(updates) || ids[""] {
				t.Errorf("request ids %v: want a fresh, non-empty one per attempt", ids)
			}
		})
	}
}

func TestModifyStopsWhenContextEnds(t *testing.T) {
	srv := clienttest.Start(t)
	srv.Put(samplePlan())
	srv.ConcurrentWrites(100)
	c := dial(t, srv)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := c.Modify(ctx, nhs, func(*careplanv1.CarePlan) error {
		cancel() // the first attempt still fails ABORTED; the backoff must notice
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Modify = %v, want context.Canceled", err)
	}
}

func TestTokens(t *testing.T) {
	t.Run("fixed token", func(t *testing.T) {
		srv := clienttest.Start(t)
		c := dial(t, srv, client.WithToken("abc.def.ghi"))
		_, _ = c.Get(t.Context(), nhs)
		calls := srv.Calls()
		if len(calls) != 1 || !slices.Equal(calls[0].Metadata.Get("authorization"), []string{"Bearer abc.def.ghi"}) {
			t.Fatalf("server saw %+v, want authorization: Bearer abc.def.ghi", calls)
		}
	})
	t.Run("source called per RPC", func(t *testing.T) {
		srv := clienttest.Start(t)
		var n atomic.Int32
		c := dial(t, srv, client.WithTokenSource(func(context.Context) (string, error) {
			return fmt.Sprintf("token-%d", n.Add(1)), nil
		}))
		for range 3 {
			_, _ = c.Get(t.Context(), nhs)
		}
		var got []string
		for _, call := range srv.Calls() {
			got = append(got, call.Metadata.Get("authorization")...)
		}
		want := []string{"Bearer token-1", "Bearer token-2", "Bearer token-3"}
		if !slices.Equal(got, want) {
			t.Fatalf("authorization seen = %q, want %q", got, want)
		}
	})
	t.Run("source error", func(t *testing.T) {
		srv := clienttest.Start(t)
		c := dial(t, srv, client.WithTokenSource(func(context.Context) (string, error) {
			return "", errors.New("identity provider down")
		}))
		if _, err := c.Get(t.Context(), nhs); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("Get = %v, want ErrUnauthenticated", err)
		}
		if n := len(srv.Calls()); n != 0 {
			t.Fatalf("server saw %d calls, want none", n)
		}
	})
	t.Run("no token", func(t *testing.T) {
		srv := clienttest.Start(t)
		c := dial(t, srv)
		_, _ = c.Get(t.Context(), nhs)
		if md := srv.Calls()[0].Metadata; len(md.Get("authorization")) != 0 {
			t.Fatalf("authorization = %q, want none", md.Get("authorization"))
		}
	})
}

func TestWithAccessReason(t *testing.T) {
	srv := clienttest.Start(t)
	c := dial(t, srv)
	const reason = "Unconscious in A&E, no team contactable"
	_, _ = c.Get(client.WithAccessReason(t.Context(), reason), nhs)
	if got := srv.Calls()[0].Metadata.Get("x-access-reason"); !slices.Equal(got, []string{reason}) {
		t.Fatalf("x-access-reason = %q, want %q", got, reason)
	}
}

func TestHistoryFollowsPages(t *testing.T) {
	srv := clienttest.Start(t)
	plan := samplePlan()
	for i := range 5 {
		plan.WhatMatters = fmt.Sprintf("v%d", i+1)
		srv.Put(plan)
	}
	srv.SetPageSize(2)
	c := dial(t, srv)

	got, err := c.History(t.Context(), nhs)
	if err != nil {
		t.Fatal(err)
	}
	var versions []int64
	for _, v := range got {
		versions = append(versions, v.GetVersion())
	}
	if !slices.Equal(versions, []int64{1, 2, 3, 4, 5}) {
		t.Errorf("History versions = %v, want 1..5 oldest first", versions)
	}
	var tokens []string
	for _, req := range callsTo[*careplanv1.ListCarePlanVersionsRequest](srv, "ListCarePlanVersions") {
		tokens = append(tokens, req.GetPageToken())
	}
	if !slices.Equal(tokens, []string{"", "2", "4"}) {
		t.Errorf("page tokens sent = %q, want three pages", tokens)
	}

	if _, err := c.History(t.Context(), "9434765918"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("History of a missing plan = %v, want ErrNotFound", err)
	}
}
