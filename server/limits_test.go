package server_test

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/server"
)

func TestPerCallerRateLimit(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.RateLimit = server.RateLimit{PerSecond: 0.5, Burst: 2} })
	nhs := fixture.NHSNumber(60)
	get := func(c caller) error {
		_, err := e.plans.GetCarePlan(e.as(c), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
		return err
	}
	for range 2 {
		if err := get(trustUser); status.Code(err) != codes.NotFound {
			t.Fatalf("call within the burst: %v", err)
		}
	}
	err := get(trustUser)
	info, _ := wantCode(t, err, codes.ResourceExhausted)
	if info.GetReason() != "RATE_LIMITED" {
		t.Fatalf("reason = %q", info.GetReason())
	}
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 || retry.GetRetryDelay().AsDuration() > 2*time.Second {
		t.Fatalf("RetryInfo = %v, want a delay of at most 2s", retry)
	}
	// Another caller has its own budget.
	if err := get(council); status.Code(err) != codes.NotFound {
		t.Fatalf("another caller was limited: %v", err)
	}
	// A rejected call is not audited (a flood must not cost writes), and
	// nothing is written.
	if n := len(e.auditEvents(nhs)); n != 3 {
		t.Fatalf("audit events = %d, want 3 (the calls let through)", n)
	}
}

func TestMaxConcurrentStreams(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxConcurrentStreams = 1 })
	e.create(trustUser, fixture.TrustPlan(fixture.NHSNumber(63)))
	ctx, cancel := context.WithCancel(context.Background())
	recvN(t, e.watch(ctx, council, 0), 1) // the watch now holds the connection's one stream
	short, cancelShort := context.WithTimeout(e.as(trustUser), 300*time.Millisecond)
	defer cancelShort()
	_, err := e.plans.GetCarePlan(short, &careplanv1.GetCarePlanRequest{NhsNumber: fixture.NHSNumber(61)})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a second call while the one stream is busy: %v, want it to wait until its deadline", err)
	}
	cancel()
	_, err = e.plans.GetCarePlan(e.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: fixture.NHSNumber(61)})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("after the stream closed: %v", err)
	}
}

// TestKeepaliveEnforcement: a client that pings too often is disconnected
// with GOAWAY ENHANCE_YOUR_CALM, as gRPC's keepalive policy says.
func TestKeepaliveEnforcement(t *testing.T) {
	e := newEnv(t)
	conn, err := net.DialTimeout("tcp", e.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := range 10 {
			if fr.WritePing(false, [8]byte{byte(i)}) != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm || string(ga.DebugData()) != "too_many_pings" {
				t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM too_many_pings", ga.ErrCode, ga.DebugData())
			}
			return
		}
	}
}

// TestDeadlineHonoured: a write whose deadline has passed is not committed.
func TestDeadlineHonoured(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(62)
	ctx, cancel := context.WithDeadline(e.as(trustUser), time.Now().Add(-time.Second))
	defer cancel()
	_, err := e.plans.CreateCarePlan(ctx, &careplanv1.CreateCarePlanRequest{CarePlan: fixture.TrustPlan(nhs)})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("create after its deadline: %v", err)
	}
	if _, err := e.Store.Get(context.Background(), nhs); err == nil {
		t.Fatal("a create whose deadline had passed was written")
	}
}
