package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/fixture"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// TestFromError decodes errors as the real server sends them.
func TestFromError(t *testing.T) {
	s, _ := start(t)
	trust := s.Client(t, testserver.TrustUser)
	council := s.Client(t, testserver.Council)
	plan := testserver.CreatePlan(t, trust, 1)
	current := setWhatMatters(t, trust, plan.GetNhsNumber(), "A newer version.")
	plain := errors.New("not a status")

	tests := []struct {
		name        string
		call        func(ctx context.Context) error
		wantCode    codes.Code
		wantReason  string
		wantFields  []string
		wantEtag    string
		passThrough error // the error FromError must return unchanged
	}{
		{
			name: "bad request fields",
			call: func(ctx context.Context) error {
				bad := fixture.TrustPlan(fixture.NHSNumber(2))
				bad.Person.BirthDate = "1941-13-40"
				_, err := trust.Create(ctx, bad, "")
				return err
			},
			wantCode:   codes.InvalidArgument,
			wantReason: "INVALID_ARGUMENT",
			wantFields: []string{"care_plan.person.birth_date"},
		},
		{
			name: "etag mismatch",
			call: func(ctx context.Context) error {
				_, err := trust.Update(ctx, plan, []string{"what_matters"}, "")
				return err
			},
			wantCode:   codes.Aborted,
			wantReason: "ETAG_MISMATCH",
			wantEtag:   current.GetEtag(),
		},
		{
			name: "forbidden change",
			call: func(ctx context.Context) error {
				change := &careplanv1.CarePlan{NhsNumber: plan.GetNhsNumber(), Etag: current.GetEtag(), Coordinator: fixture.Plan("").GetTeam()[1].GetProfessional()}
				_, err := council.Update(ctx, change, []string{"coordinator"}, "")
				return err
			},
			wantCode:   codes.PermissionDenied,
			wantReason: "FIELD_NOT_PERMITTED",
			wantFields: []string{"care_plan.coordinator"},
		},
		{
			name: "status without details",
			call: func(ctx context.Context) error {
				_, err := dial(t, closedAddr(t)).Get(ctx, plan.GetNhsNumber())
				return err
			},
			wantCode: codes.Unavailable,
		},
		{name: "nil", passThrough: nil},
		{name: "plain error", passThrough: plain},
		{name: "context error", passThrough: fmt.Errorf("wait: %w", context.Canceled)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.call == nil {
				if got := client.FromError(tt.passThrough); got != tt.passThrough {
					t.Fatalf("FromError(%v) = %v, want it unchanged", tt.passThrough, got)
				}
				return
			}
			got := tt.call(t.Context())
			var e *client.Error
			if !errors.As(got, &e) {
				t.Fatalf("error = %T %v, want *client.Error", got, got)
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

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// TestErrorsIs maps every code to its sentinel; it needs no server.
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
	s, _ := start(t)
	_, err := s.Client(t, testserver.TrustUser).Get(t.Context(), fixture.NHSNumber(1))
	var e *client.Error
	if !errors.Is(err, client.ErrNotFound) || !errors.As(err, &e) || e.Reason != "PLAN_NOT_FOUND" {
		t.Fatalf("Get of a missing plan = %v, want ErrNotFound with reason PLAN_NOT_FOUND", err)
	}
}

func TestCreateGetUpdate(t *testing.T) {
	s, tap := start(t)
	c := s.Client(t, testserver.TrustUser)
	ctx := t.Context()
	nhs := fixture.NHSNumber(1)

	created, err := c.Create(ctx, fixture.TrustPlan(nhs), "req-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, fixture.TrustPlan(nhs), "req-2"); !errors.Is(err, client.ErrAlreadyExists) {
		t.Fatalf("second Create = %v, want ErrAlreadyExists", err)
	}
	got, err := c.Get(ctx, nhs)
	if err != nil || got.GetEtag() != created.GetEtag() {
		t.Fatalf("Get = %v, %v; want etag %q", got, err, created.GetEtag())
	}

	got.WhatMatters = "Getting to the allotment."
	updated, err := c.Update(ctx, got, nil, "")
	if err != nil || updated.GetWhatMatters() != got.GetWhatMatters() || updated.GetVersion() != 2 {
		t.Fatalf("Update = %v, %v; want version 2 with the change", updated, err)
	}
	got.WhatMatters = "stale"
	_, err = c.Update(ctx, got, []string{"what_matters"}, "req-3")
	var e *client.Error
	if !errors.As(err, &e) || !errors.Is(err, client.ErrEtagMismatch) || e.CurrentEtag() != updated.GetEtag() {
		t.Fatalf("stale Update = %v, want ErrEtagMismatch carrying the new etag %q", err, updated.GetEtag())
	}

	updates := requestsTo[*careplanv1.UpdateCarePlanRequest](tap, "UpdateCarePlan")
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

// TestModify causes real conflicts: a second writer (the council, changing
// its own goal) updates the plan inside fn, so the etag fn was given is
// stale by the time Modify writes.
func TestModify(t *testing.T) {
	const newText = "Walking to the shop on my own."
	tests := []struct {
		name       string
		collisions int // attempts on which the council writes first
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
			s, tap := start(t)
			trustToken := s.Token(testserver.TrustUser)
			c := dial(t, s.Addr, client.WithToken(trustToken))
			other := s.Client(t, testserver.Council)
			nhs := testserver.CreatePlan(t, c, 1).GetNhsNumber()

			var runs int
			var etagsSeen []string
			fn := func(p *careplanv1.CarePlan) error {
				runs++
				etagsSeen = append(etagsSeen, p.GetEtag())
				if runs <= tt.collisions {
					councilWrites(t, other, nhs, runs)
				}
				p.WhatMatters = newText
				p.KeyContacts = nil // cleared: mask "*" must store the plan exactly as fn left it
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
			var updates []*careplanv1.UpdateCarePlanRequest
			for _, call := range tap.callsTo("UpdateCarePlan") {
				if slices.Equal(call.md.Get("authorization"), []string{"Bearer " + trustToken}) {
					updates = append(updates, call.requests[0].(*careplanv1.UpdateCarePlanRequest))
				}
			}
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
				if got.GetWhatMatters() != newText || len(got.GetKeyContacts()) != 0 || got.GetVersion() != int64(tt.collisions+2) {
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

// councilWrites stores a new version through the council's own goal, as a
// concurrent writer would.
func councilWrites(t *testing.T, council *client.Client, nhs string, n int) {
	t.Helper()
	cur, err := council.Get(t.Context(), nhs)
	if err != nil {
		t.Fatal(err)
	}
	cur.Goals[1].Description = fmt.Sprintf("Stay living at home (council edit %d)", n)
	if _, err := council.Update(t.Context(), cur, []string{"goals"}, ""); err != nil {
		t.Fatalf("concurrent council write: %v", err)
	}
}

// TestModifyStopsWhenContextEnds cancels the context just after the server
// refused the first attempt as stale, so Modify is in its backoff when the
// context ends and must return rather than try again.
func TestModifyStopsWhenContextEnds(t *testing.T) {
	s, _ := start(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cancelAfterAborted := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if status.Code(err) == codes.Aborted {
			cancel()
		}
		return err
	})
	c := s.Client(t, testserver.TrustUser, client.WithDialOptions(cancelAfterAborted))
	other := s.Client(t, testserver.Council)
	nhs := testserver.CreatePlan(t, c, 1).GetNhsNumber()
	runs := 0
	_, err := c.Modify(ctx, nhs, func(*careplanv1.CarePlan) error {
		runs++
		councilWrites(t, other, nhs, runs)
		return nil
	})
	if !errors.Is(err, context.Canceled) || runs != 1 {
		t.Fatalf("Modify = %v after %d runs of fn, want context.Canceled after 1", err, runs)
	}
}

func TestTokens(t *testing.T) {
	s, tap := start(t)
	nhs := testserver.CreatePlan(t, s.Client(t, testserver.TrustUser), 1).GetNhsNumber()
	authHeaders := func() [][]string {
		var out [][]string
		for _, c := range tap.callsTo("GetCarePlan") {
			out = append(out, c.md.Get("authorization"))
		}
		return out
	}

	t.Run("fixed token", func(t *testing.T) {
		tok := s.Token(testserver.ReadOnly)
		before := len(authHeaders())
		if _, err := dial(t, s.Addr, client.WithToken(tok)).Get(t.Context(), nhs); err != nil {
			t.Fatalf("Get with a valid token: %v", err)
		}
		if got := authHeaders()[before:]; len(got) != 1 || !slices.Equal(got[0], []string{"Bearer " + tok}) {
			t.Fatalf("server saw authorization %q, want Bearer and the token", got)
		}
	})
	t.Run("source called per RPC", func(t *testing.T) {
		var n atomic.Int32
		var minted []string
		c := dial(t, s.Addr, client.WithTokenSource(func(context.Context) (string, error) {
			who := testserver.ReadOnly
			who.Subject = fmt.Sprintf("reader-%d", n.Add(1)) // a distinct token each time
			minted = append(minted, "Bearer "+s.Token(who))
			return strings.TrimPrefix(minted[len(minted)-1], "Bearer "), nil
		}))
		before := len(authHeaders())
		for range 3 {
			if _, err := c.Get(t.Context(), nhs); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		for _, h := range authHeaders()[before:] {
			got = append(got, h...)
		}
		if !slices.Equal(got, minted) || len(got) != 3 {
			t.Fatalf("authorization seen = %q, want the three minted tokens %q", got, minted)
		}
	})
	t.Run("source error", func(t *testing.T) {
		before := len(authHeaders())
		c := dial(t, s.Addr, client.WithTokenSource(func(context.Context) (string, error) {
			return "", errors.New("identity provider down")
		}))
		_, err := c.Get(t.Context(), nhs)
		var e *client.Error
		if !errors.Is(err, client.ErrUnauthenticated) || !errors.As(err, &e) || e.Reason != "" {
			t.Fatalf("Get = %v, want ErrUnauthenticated raised by the client (no server reason)", err)
		}
		if n := len(authHeaders()) - before; n != 0 {
			t.Fatalf("server saw %d calls, want none", n)
		}
	})
	t.Run("no token", func(t *testing.T) {
		before := len(authHeaders())
		_, err := dial(t, s.Addr).Get(t.Context(), nhs)
		var e *client.Error
		if !errors.As(err, &e) || e.Code != codes.Unauthenticated || e.Reason != "MISSING_TOKEN" {
			t.Fatalf("Get = %v, want UNAUTHENTICATED MISSING_TOKEN from the server", err)
		}
		if got := authHeaders()[before:]; len(got) != 1 || len(got[0]) != 0 {
			t.Fatalf("authorization = %q, want none", got)
		}
	})
}

// TestWithAccessReason: a break-glass read needs the reason header, so the
// real server's answer shows it was sent.
func TestWithAccessReason(t *testing.T) {
	s, tap := start(t)
	nhs := testserver.CreatePlan(t, s.Client(t, testserver.TrustUser), 1).GetNhsNumber()
	c := s.Client(t, testserver.BreakGlass)
	if _, err := c.Get(t.Context(), nhs); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("break-glass Get without a reason = %v, want ErrPermissionDenied", err)
	}
	const reason = "Unconscious in A&E, no team contactable"
	if _, err := c.Get(client.WithAccessReason(t.Context(), reason), nhs); err != nil {
		t.Fatalf("break-glass Get with a reason: %v", err)
	}
	calls := tap.callsTo("GetCarePlan")
	if got := calls[len(calls)-1].md.Get("x-access-reason"); !slices.Equal(got, []string{reason}) {
		t.Fatalf("x-access-reason = %q, want %q", got, reason)
	}
}

// TestHistoryFollowsPages stores more versions than the server's largest
// page (100), so History needs two pages.
func TestHistoryFollowsPages(t *testing.T) {
	s, tap := start(t)
	c := s.Client(t, testserver.TrustUser)
	plan := testserver.CreatePlan(t, c, 1)
	const versions = 105
	for i := 2; i <= versions; i++ {
		plan.WhatMatters = fmt.Sprintf("v%d", i)
		var err error
		if plan, err = c.Update(t.Context(), plan, []string{"what_matters"}, ""); err != nil {
			t.Fatal(err)
		}
	}

	got, err := c.History(t.Context(), plan.GetNhsNumber())
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v.GetVersion() != int64(i+1) {
			t.Fatalf("History[%d] is version %d, want oldest first with no gaps", i, v.GetVersion())
		}
	}
	if len(got) != versions || got[versions-1].GetWhatMatters() != fmt.Sprintf("v%d", versions) {
		t.Fatalf("History returned %d versions, want %d ending with the last write", len(got), versions)
	}
	var tokens []string
	for _, req := range requestsTo[*careplanv1.ListCarePlanVersionsRequest](tap, "ListCarePlanVersions") {
		tokens = append(tokens, req.GetPageToken())
	}
	if len(tokens) != 2 || tokens[0] != "" || tokens[1] == "" {
		t.Errorf("page tokens sent = %q, want two pages", tokens)
	}

	if _, err := c.History(t.Context(), fixture.NHSNumber(2)); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("History of a missing plan = %v, want ErrNotFound", err)
	}
}
