// Package testserver runs the real careplan server for tests: a bbolt file
// in t.TempDir(), a freshly generated signing key trusted through a JWKS,
// the full interceptor chain, on a loopback port. Tests in any package use
// it to exercise the service over the wire, with real tokens.
package testserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/server"
	"github.com/careplan/careplan/store/boltstore"
)

// Issuer and Audience of the tokens the test server trusts.
const (
	Issuer   = "https://issuer.test"
	Audience = "careplan"
)

// Caller describes a token's claims.
type Caller struct {
	Subject, Org, OrgType string
	Roles                 []string
}

var rw = []string{auth.RoleRead, auth.RoleWrite}

// Sample callers, matching the organisations in package fixture.
var (
	TrustUser  = Caller{"nurse-1", "RXA", "nhs", rw}
	Council    = Caller{"sw-1", "C123", "council", rw}
	Unrelated  = Caller{"gp-1", "ZZZ9", "nhs", rw}
	BreakGlass = Caller{"ed-1", "ZZZ9", "nhs", []string{auth.RoleBreakGlass}}
	ReadOnly   = Caller{"reader-1", "RXA", "nhs", []string{auth.RoleRead}}
)

// Server is a running careplan server.
type Server struct {
	// fail reports a setup error: t.Fatal in tests, panic in examples.
	fail      func(args ...any)
	cleanup   func(func())
	Signer    *auth.Signer
	Store     *boltstore.Store
	Path      string
	Addr      string
	Conn      *grpc.ClientConn
	srv       *server.Server
	storeOpts boltstore.Options
	opts      []Option
}

// Option adjusts the server config.
type Option func(*server.Config)

// Start runs a server on a new data file until the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return StartWith(t, Settings{}, opts...)
}

// Settings choose where and how the store is opened.
type Settings struct {
	// Path of the data file; default a file in t.TempDir().
	Path  string
	Store boltstore.Options
}

// StartWith is Start with store settings.
func StartWith(t testing.TB, set Settings, opts ...Option) *Server {
	t.Helper()
	if set.Path == "" {
		set.Path = filepath.Join(t.TempDir(), "careplan.db")
	}
	return newServer(set, opts, t.Fatal, t.Cleanup)
}

// StartExample runs a server for a runnable Example, which has no
// testing.T: it panics on a setup error, and close stops the server and
// removes its files.
func StartExample(opts ...Option) (s *Server, close func()) {
	dir, err := os.MkdirTemp("", "careplan-example-")
	if err != nil {
		panic(err)
	}
	var cleanups []func()
	s = newServer(Settings{Path: filepath.Join(dir, "careplan.db")}, opts, func(args ...any) { panic(fmt.Sprint(args...)) },
		func(f func()) { cleanups = append(cleanups, f) })
	return s, func() {
		for _, f := range cleanups {
			f()
		}
		_ = os.RemoveAll(dir)
	}
}

func newServer(set Settings, opts []Option, fail func(args ...any), cleanup func(func())) *Server {
	signer, err := auth.NewSigner("test-key-1")
	if err != nil {
		fail(err)
	}
	s := &Server{fail: fail, cleanup: cleanup, Signer: signer, Path: set.Path, storeOpts: set.Store, opts: opts}
	s.start()
	return s
}

func (s *Server) start() {
	t := struct{ Fatal func(args ...any) }{s.fail}
	st, err := boltstore.Open(s.Path, s.storeOpts)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := s.Signer.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.Config{Issuers: []auth.IssuerConfig{{Issuer: Issuer, Audience: Audience, JWKS: jwks}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Store: st, Verifier: v, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range s.opts {
		o(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:0"
	if s.Addr != "" {
		addr = s.Addr // a restart keeps the port, so clients can reconnect
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s.Store, s.srv, s.Conn, s.Addr = st, srv, conn, lis.Addr().String()
	s.cleanup(s.Stop)
}

// Stop shuts the server down and closes the store. It is safe to call twice.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	_ = s.Conn.Close()
	s.srv.Shutdown(time.Second)
	_ = s.Store.Close()
	s.srv = nil
}

// Restart stops the server and serves the same data file on the same port.
func (s *Server) Restart() {
	s.Stop()
	s.start()
}

// Token mints a one-hour token for c.
func (s *Server) Token(c Caller) string {
	now := time.Now()
	tok, err := s.Signer.Mint(auth.Claims{
		Issuer: Issuer, Audience: []string{Audience}, Subject: c.Subject, Org: c.Org, OrgType: c.OrgType,
		Roles: c.Roles, IssuedAt: now, ExpiresAt: now.Add(time.Hour),
	})
	if err != nil {
		s.fail(err)
	}
	return tok
}

// Context returns ctx carrying c's token and any extra metadata pairs.
func (s *Server) Context(ctx context.Context, c Caller, kv ...string) context.Context {
	md := metadata.Pairs(append([]string{"authorization", "Bearer " + s.Token(c)}, kv...)...)
	return metadata.NewOutgoingContext(ctx, md)
}

// Client dials s with the client library, with a token for who, and closes
// it when the test ends.
func (s *Server) Client(t testing.TB, who Caller, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), s.Addr, append([]client.Option{client.WithToken(s.Token(who))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// CreatePlan stores the trust's fixture plan for the i-th NHS number
// through c.
func CreatePlan(t testing.TB, c *client.Client, i int) *careplanv1.CarePlan {
	t.Helper()
	plan, err := c.Create(context.Background(), fixture.TrustPlan(fixture.NHSNumber(i)), "")
	if err != nil {
		t.Fatal(err)
	}
	return plan
}
