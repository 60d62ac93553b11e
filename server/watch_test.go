package server_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/server"
)

// watch opens a stream as c from revision from.
func (e *env) watch(ctx context.Context, c caller, from int64) careplanv1.CarePlanService_WatchCarePlansClient {
	e.t.Helper()
	stream, err := e.plans.WatchCarePlans(withTokenCtx(ctx, e.token(c)), &careplanv1.WatchCarePlansRequest{FromRevision: from})
	if err != nil {
		e.t.Fatal(err)
	}
	return stream
}

// recvN receives n events or fails.
func recvN(t *testing.T, stream careplanv1.CarePlanService_WatchCarePlansClient, n int) []*careplanv1.CarePlanEvent {
	t.Helper()
	var out []*careplanv1.CarePlanEvent
	for len(out) < n {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv after %d of %d events: %v", len(out), n, err)
		}
		out = append(out, ev)
	}
	return out
}

func (e *env) bump(c caller, cur *careplanv1.CarePlan, text string) *careplanv1.CarePlan {
	e.t.Helper()
	next := &careplanv1.CarePlan{NhsNumber: cur.GetNhsNumber(), Etag: cur.GetEtag(), WhatMatters: text}
	out, err := e.plans.UpdateCarePlan(e.as(c), &careplanv1.UpdateCarePlanRequest{CarePlan: next})
	if err != nil {
		e.t.Fatalf("update: %v", err)
	}
	return out
}

func TestWatchResumesAcrossDisconnectAndRestart(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(40)
	cur := e.create(trustUser, fixture.TrustPlan(nhs))
	for i := range 4 {
		cur = e.bump(trustUser, cur, "before "+strconv.Itoa(i))
	}
	// The council reads 3 of the 5 events so far, then disconnects.
	ctx, cancel := context.WithCancel(context.Background())
	got := recvN(t, e.watch(ctx, council, 0), 3)
	cancel()
	last := got[len(got)-1].GetRevision()

	for i := range 3 {
		cur = e.bump(trustUser, cur, "while away "+strconv.Itoa(i))
	}
	e.restart()
	cur, _ = e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	for i := range 2 {
		cur = e.bump(trustUser, cur, "after restart "+strconv.Itoa(i))
	}
	// 1 create + 4 + 3 + 2 updates = 10 events; the council has seen 3.
	got = append(got, recvN(t, e.watch(context.Background(), council, last), 7)...)
	for i, ev := range got {
		if ev.GetRevision() != int64(i+1) {
			t.Fatalf("event %d has revision %d: gap or duplicate", i, ev.GetRevision())
		}
		if ev.GetCarePlan().GetVersion() != int64(i+1) || ev.GetNhsNumber() != nhs {
			t.Fatalf("event %d carries version %d", i, ev.GetCarePlan().GetVersion())
		}
	}
	if got[0].GetType() != careplanv1.CarePlanEvent_TYPE_CREATED || got[9].GetType() != careplanv1.CarePlanEvent_TYPE_UPDATED {
		t.Fatal("event types wrong")
	}
	if !proto.Equal(got[9].GetCarePlan(), cur) || got[9].GetActor().GetSubject() != "nurse-1" {
		t.Fatal("last event does not carry the stored plan and its actor")
	}
}

func TestWatchOnlyRelatedPlans(t *testing.T) {
	e := newEnv(t)
	shared := fixture.NHSNumber(41)
	e.create(trustUser, fixture.TrustPlan(shared))
	trustOnly := fixture.TrustPlan(fixture.NHSNumber(42))
	trustOnly.Team, trustOnly.Goals = trustOnly.Team[:1], trustOnly.Goals[:1]
	e.create(trustUser, trustOnly)
	// A break-glass read by an unrelated organisation reaches the related
	// ones on the feed.
	if _, err := e.plans.GetCarePlan(e.as(breakGlass, "x-access-reason", "Unconscious in A&E, need the plan"),
		&careplanv1.GetCarePlanRequest{NhsNumber: shared}); err != nil {
		t.Fatal(err)
	}
	marker := e.create(trustUser, fixture.TrustPlan(fixture.NHSNumber(43)))

	stream := e.watch(context.Background(), council, 0)
	evs := recvN(t, stream, 3)
	if evs[0].GetNhsNumber() != shared || evs[1].GetType() != careplanv1.CarePlanEvent_TYPE_ACCESSED_BREAK_GLASS ||
		evs[1].GetActor().GetOrgCode() != "ZZZ9" || evs[1].GetAccessReason() == "" || evs[2].GetNhsNumber() != marker.GetNhsNumber() {
		t.Fatalf("council feed = %v", evs)
	}
	for _, ev := range evs {
		if ev.GetNhsNumber() == trustOnly.GetNhsNumber() {
			t.Fatal("the council saw a plan it has no part in")
		}
	}
	// The unrelated organisation's feed holds nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := e.watch(ctx, caller{Subject: "gp-1", Org: "ZZZ9", OrgType: "nhs", Roles: rw}, 0).Recv()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("unrelated watcher got %v, want nothing until its deadline", err)
	}
}

func TestWatchNeedsReadRoleAndValidRevision(t *testing.T) {
	e := newEnv(t)
	_, err := e.watch(context.Background(), caller{Subject: "nobody", Org: "RXA", OrgType: "nhs", Roles: nil}, 0).Recv()
	wantCode(t, err, codes.PermissionDenied)
	_, err = e.watch(context.Background(), council, -1).Recv()
	_, fields := wantCode(t, err, codes.InvalidArgument)
	if len(fields) != 1 || fields[0] != "from_revision" {
		t.Fatalf("fields = %v", fields)
	}
}

// TestSlowWatcherCutOff: a watcher that stops reading does not hold up
// writers; when it reads again it is cut off with the revision to resume
// from, and resuming there loses nothing.
func TestSlowWatcherCutOff(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.Watch = server.WatchOptions{SendTimeout: 300 * time.Millisecond} })
	// A small fixed window (no BDP growth) so the stalled watcher's stream
	// fills quickly.
	conn, err := grpc.NewClient(e.Conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	nhs := fixture.NHSNumber(44)
	cur := e.create(trustUser, fixture.TrustPlan(nhs))
	stream, err := careplanv1.NewCarePlanServiceClient(conn).WatchCarePlans(withTokenCtx(context.Background(), e.token(council)), &careplanv1.WatchCarePlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recvN(t, stream, 1)

	// The watcher stalls; 150 writes of ~8 KB plans all complete.
	const writes = 150
	for i := range writes {
		next := &careplanv1.CarePlan{NhsNumber: nhs, Etag: cur.GetEtag(), WhatMatters: strconv.Itoa(i) + string(make([]byte, 8000))}
		if cur, err = e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{CarePlan: next}); err != nil {
			t.Fatalf("write %d while a watcher is stalled: %v", i, err)
		}
	}
	time.Sleep(500 * time.Millisecond) // stay stalled past the send timeout
	seen := map[int64]bool{1: true}
	var resume int64
	for {
		ev, err := stream.Recv()
		if err != nil {
			info, _ := wantCode(t, err, codes.ResourceExhausted)
			if info.GetReason() != "WATCH_TOO_SLOW" {
				t.Fatalf("reason = %q", info.GetReason())
			}
			if resume, err = strconv.ParseInt(info.GetMetadata()["resume_from_revision"], 10, 64); err != nil {
				t.Fatal(err)
			}
			break
		}
		seen[ev.GetRevision()] = true
	}
	if resume >= writes+1 {
		t.Fatalf("resume_from_revision %d: the watcher was not behind", resume)
	}
	for r := int64(1); r <= resume; r++ {
		if !seen[r] {
			t.Fatalf("revision %d before the resume point was never delivered", r)
		}
	}
	// Resuming from the named revision delivers the rest exactly once.
	rest := recvN(t, e.watch(context.Background(), council, resume), int(writes+1-resume))
	for i, ev := range rest {
		if ev.GetRevision() != resume+int64(i)+1 {
			t.Fatalf("after resume: revision %d at position %d", ev.GetRevision(), i)
		}
	}
}

func withTokenCtx(ctx context.Context, tok string) context.Context {
	return withTokenParent(ctx, tok)
}

// padGoals adds trust-owned goals carrying about n bytes of text, so plans
// can be made large within the content bounds (10,000 characters a field).
func padGoals(p *careplanv1.CarePlan, n int) *careplanv1.CarePlan {
	for i := 0; n > 0; i++ {
		size := min(n, 10000)
		p.Goals = append(p.Goals, &careplanv1.Goal{Id: "g-pad-" + strconv.Itoa(i), Description: strings.Repeat("x", size),
			Status: careplanv1.Goal_STATUS_ACTIVE, Owner: fixture.Trust()})
		n -= size
	}
	return p
}

// TestStuckWatcherCutOffWhileConnected: a watcher whose client reads one
// event and then nothing, while staying connected, is let go after the send
// timeout even though its Send is blocked on flow control: the handler
// returns RESOURCE_EXHAUSTED / WATCH_TOO_SLOW. When the client reads again
// it gets exactly the events up to resume_from_revision, then that status;
// resuming there gives the rest, with no gap and no duplicate.
func TestStuckWatcherCutOffWhileConnected(t *testing.T) {
	returned := make(chan error, 8)
	e := newEnv(t, func(c *server.Config) {
		c.Watch = server.WatchOptions{SendTimeout: 200 * time.Millisecond, MaxBatchBytes: 100 << 10}
		// Innermost, it sees the handler itself return.
		c.ExtraOptions = append(c.ExtraOptions, grpc.ChainStreamInterceptor(
			func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				err := h(srv, ss)
				if info.FullMethod == careplanv1.CarePlanService_WatchCarePlans_FullMethodName {
					select {
					case returned <- err:
					default:
					}
				}
				return err
			}))
	})
	conn, err := grpc.NewClient(e.Conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	nhs := fixture.NHSNumber(45)
	cur := e.create(trustUser, padGoals(fixture.TrustPlan(nhs), 40000))
	stream, err := careplanv1.NewCarePlanServiceClient(conn).WatchCarePlans(withTokenCtx(context.Background(), e.token(council)), &careplanv1.WatchCarePlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recvN(t, stream, 1)

	// 30 versions of ~40 KB: far more than the 64 KiB windows hold.
	const writes = 30
	for i := range writes {
		cur = e.bump(trustUser, cur, "stuck "+strconv.Itoa(i))
	}
	select {
	case err := <-returned:
		if info, _ := wantCode(t, err, codes.ResourceExhausted); info.GetReason() != "WATCH_TOO_SLOW" {
			t.Fatalf("handler returned reason %q", info.GetReason())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watch handler did not return while its client stayed connected without reading")
	}

	seen := []int64{1}
	var resume int64
	for {
		ev, err := stream.Recv()
		if err != nil {
			info, _ := wantCode(t, err, codes.ResourceExhausted)
			if info.GetReason() != "WATCH_TOO_SLOW" {
				t.Fatalf("reason = %q", info.GetReason())
			}
			if resume, err = strconv.ParseInt(info.GetMetadata()["resume_from_revision"], 10, 64); err != nil {
				t.Fatal(err)
			}
			break
		}
		seen = append(seen, ev.GetRevision())
	}
	// Exactly 1..resume arrived: every event queued before the cut-off,
	// and none past the named revision.
	for i, r := range seen {
		if r != int64(i+1) {
			t.Fatalf("before the cut-off: revision %d at position %d (%v)", r, i, seen)
		}
	}
	if resume != int64(len(seen)) || resume >= writes+1 {
		t.Fatalf("resume_from_revision = %d after receiving revisions 1..%d of %d", resume, len(seen), writes+1)
	}
	rest := recvN(t, e.watch(context.Background(), council, resume), int(writes+1-resume))
	for i, ev := range rest {
		if ev.GetRevision() != resume+int64(i)+1 {
			t.Fatalf("after resume: revision %d at position %d", ev.GetRevision(), i)
		}
	}
	if !proto.Equal(rest[len(rest)-1].GetCarePlan(), cur) {
		t.Fatal("the last event does not carry the last version")
	}
}

// TestWatchForgetsRemovedOrganisation: once the council is removed from a
// plan it can no longer read the plan, and the feed gives it nothing more
// of that plan either: not the later versions on a live watch, and not the
// old versions on a watch from 0. Other plans still reach it, and the
// coordinator still gets everything.
func TestWatchForgetsRemovedOrganisation(t *testing.T) {
	e := newEnv(t)
	removed := fixture.NHSNumber(46)
	a := e.create(trustUser, fixture.TrustPlan(removed))                  // rev 1
	a = e.bump(trustUser, a, "with the council")                          // rev 2
	kept := e.create(trustUser, fixture.TrustPlan(fixture.NHSNumber(47))) // rev 3
	live := e.watch(context.Background(), council, 0)
	if evs := recvN(t, live, 3); evs[0].GetNhsNumber() != removed || evs[2].GetNhsNumber() != kept.GetNhsNumber() {
		t.Fatalf("council feed before removal = %v", evs)
	}

	// The coordinator takes the council out of the team (rev 4) and
	// changes the plan again (rev 5).
	a, err := e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{CarePlan: &careplanv1.CarePlan{
		NhsNumber: removed, Etag: a.GetEtag(), Team: a.GetTeam()[:1],
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.bump(trustUser, a, "without the council")
	_, err = e.plans.GetCarePlan(e.as(council), &careplanv1.GetCarePlanRequest{NhsNumber: removed})
	wantCode(t, err, codes.PermissionDenied)
	marker := e.create(trustUser, fixture.TrustPlan(fixture.NHSNumber(48))) // rev 6

	if ev := recvN(t, live, 1)[0]; ev.GetRevision() != 6 || ev.GetNhsNumber() != marker.GetNhsNumber() {
		t.Fatalf("live council watcher got revision %d after the removal, want only the other plan's 6", ev.GetRevision())
	}
	fresh := recvN(t, e.watch(context.Background(), council, 0), 2)
	if fresh[0].GetRevision() != 3 || fresh[1].GetRevision() != 6 {
		t.Fatalf("council watch from 0 = revisions %d, %d; want 3 and 6 only", fresh[0].GetRevision(), fresh[1].GetRevision())
	}
	for i, ev := range recvN(t, e.watch(context.Background(), trustUser, 0), 6) {
		if ev.GetRevision() != int64(i+1) {
			t.Fatalf("coordinator feed: revision %d at position %d", ev.GetRevision(), i)
		}
	}
}

// TestWatchStopsRemovedPlanMidBatch: a watcher reading slowly through a
// batch does not keep getting a plan for long after its organisation was
// removed from it: the current plan is read again after a second.
func TestWatchStopsRemovedPlanMidBatch(t *testing.T) {
	e := newEnv(t)
	conn, err := grpc.NewClient(e.Conn.Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	nhs := fixture.NHSNumber(49)
	cur := e.create(trustUser, padGoals(fixture.TrustPlan(nhs), 30000))
	const versions = 20 // of ~32 KB: one batch, far more than the windows hold
	for i := 1; i < versions; i++ {
		cur = e.bump(trustUser, cur, "v"+strconv.Itoa(i))
	}
	stream, err := careplanv1.NewCarePlanServiceClient(conn).WatchCarePlans(withTokenCtx(context.Background(), e.token(council)), &careplanv1.WatchCarePlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recvN(t, stream, 1)
	if _, err := e.plans.UpdateCarePlan(e.as(trustUser), &careplanv1.UpdateCarePlanRequest{CarePlan: &careplanv1.CarePlan{
		NhsNumber: nhs, Etag: cur.GetEtag(), Team: cur.GetTeam()[:1],
	}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	marker := e.create(trustUser, fixture.TrustPlan(fixture.NHSNumber(50)))
	got := 1
	for {
		ev := recvN(t, stream, 1)[0]
		if ev.GetNhsNumber() == marker.GetNhsNumber() {
			break
		}
		got++
	}
	// What was already queued for the stream still arrives; the rest of
	// the batch does not.
	if got >= versions {
		t.Fatalf("the council got all %d versions after it was removed from the plan", got)
	}
}
