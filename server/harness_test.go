package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

const (
	testIssuer   = testserver.Issuer
	testAudience = testserver.Audience
)

// env is the real server (package testserver) plus a CarePlanService client.
type env struct {
	*testserver.Server
	t     *testing.T
	plans careplanv1.CarePlanServiceClient
}

func newEnv(t *testing.T, opts ...testserver.Option) *env {
	t.Helper()
	e := &env{Server: testserver.Start(t, opts...), t: t}
	e.plans = careplanv1.NewCarePlanServiceClient(e.Conn)
	return e
}

// restart stops the server and opens the same data file again.
func (e *env) restart() {
	e.Restart()
	e.plans = careplanv1.NewCarePlanServiceClient(e.Conn)
}

type caller = testserver.Caller

var (
	rw         = []string{auth.RoleRead, auth.RoleWrite}
	trustUser  = testserver.TrustUser
	council    = testserver.Council
	unrelated  = testserver.Unrelated
	breakGlass = testserver.BreakGlass
	readOnly   = testserver.ReadOnly
)

// as returns a context that calls with c's token, plus metadata pairs.
func (e *env) as(c caller, kv ...string) context.Context {
	return withToken(e.Token(c), kv...)
}

func (e *env) token(c caller) string { return e.Token(c) }

func withToken(tok string, kv ...string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = cancel // released when the test process ends; each call is short
	return withTokenParent(ctx, tok, kv...)
}

func withTokenParent(ctx context.Context, tok string, kv ...string) context.Context {
	md := metadata.Pairs(append([]string{"authorization", "Bearer " + tok}, kv...)...)
	return metadata.NewOutgoingContext(ctx, md)
}

// versionCount returns how many versions the store holds for nhs.
func (e *env) versionCount(nhs string) int {
	e.t.Helper()
	vs, err := e.Store.ListVersions(context.Background(), nhs, 0, 10000)
	if err != nil {
		e.t.Fatalf("ListVersions: %v", err)
	}
	return len(vs)
}

func (e *env) auditEvents(nhs string) []*careplanv1.AuditEvent {
	e.t.Helper()
	evs, _, err := e.Store.ListAudit(context.Background(), store.AuditQuery{NhsNumber: nhs, Limit: 10000})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// wantCode fails unless err is a status with code, and returns its
// ErrorInfo and BadRequest field paths.
func wantCode(t *testing.T, err error, code codes.Code) (*errdetails.ErrorInfo, []string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		t.Fatalf("err = %v, want code %v", err, code)
	}
	var info *errdetails.ErrorInfo
	var fields []string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return info, fields
}
