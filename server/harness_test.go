package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/server"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/boltstore"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "careplan"
)

// env is a real server on a loopback port, with a real bbolt file and a
// real signing key, and a client connection to it.
type env struct {
	t      *testing.T
	signer *auth.Signer
	store  *boltstore.Store
	path   string
	srv    *server.Server
	conn   *grpc.ClientConn
	plans  careplanv1.CarePlanServiceClient
	cfg    server.Config
}

type envOption func(*server.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	signer, err := auth.NewSigner("test-key-1")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, signer: signer, path: filepath.Join(t.TempDir(), "careplan.db")}
	e.start(opts...)
	return e
}

func (e *env) start(opts ...envOption) {
	t := e.t
	st, err := boltstore.Open(e.path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := e.signer.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Issuers: []auth.IssuerConfig{{Issuer: testIssuer, Audience: testAudience, JWKS: jwks}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Store: st, Verifier: v, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.store, e.srv, e.conn, e.cfg = st, srv, conn, cfg
	e.plans = careplanv1.NewCarePlanServiceClient(conn)
	t.Cleanup(e.stop)
}

func (e *env) stop() {
	if e.srv == nil {
		return
	}
	_ = e.conn.Close()
	e.srv.Shutdown(time.Second)
	_ = e.store.Close()
	e.srv = nil
}

// restart stops the server and opens the same data file again.
func (e *env) restart() {
	e.stop()
	e.start()
}

// caller describes a token's claims.
type caller struct {
	sub, org, orgType string
	roles             []string
}

var (
	rw         = []string{auth.RoleRead, auth.RoleWrite}
	trustUser  = caller{"nurse-1", "RXA", "nhs", rw}
	council    = caller{"sw-1", "C123", "council", rw}
	unrelated  = caller{"gp-1", "ZZZ9", "nhs", rw}
	breakGlass = caller{"ed-1", "ZZZ9", "nhs", []string{auth.RoleBreakGlass}}
	readOnly   = caller{"reader-1", "RXA", "nhs", []string{auth.RoleRead}}
)

func (e *env) token(c caller) string {
	e.t.Helper()
	now := time.Now()
	tok, err := e.signer.Mint(auth.Claims{
		Issuer: testIssuer, Audience: []string{testAudience}, Subject: c.sub, Org: c.org, OrgType: c.orgType,
		Roles: c.roles, IssuedAt: now, ExpiresAt: now.Add(time.Hour),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// as returns a context that calls with c's token, plus metadata pairs.
func (e *env) as(c caller, kv ...string) context.Context {
	return withToken(e.token(c), kv...)
}

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
	vs, err := e.store.ListVersions(context.Background(), nhs, 0, 10000)
	if err != nil {
		e.t.Fatalf("ListVersions: %v", err)
	}
	return len(vs)
}

func (e *env) auditEvents(nhs string) []*careplanv1.AuditEvent {
	e.t.Helper()
	evs, _, err := e.store.ListAudit(context.Background(), store.AuditQuery{NhsNumber: nhs, Limit: 10000})
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
