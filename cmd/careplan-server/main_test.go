package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// syncBuffer lets the test read what run prints while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevModeServesPrintedTokensAndShutsDown runs the binary's run() as
// `--dev` does, uses the token it prints, then cancels (as SIGTERM does)
// and expects a clean exit.
func TestDevModeServesPrintedTokensAndShutsDown(t *testing.T) {
	data := filepath.Join(t.TempDir(), "careplan.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--dev", "--addr", "127.0.0.1:0", "--data", data}, &stdout, &stderr, ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("run exited early: %v\n%s", err, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	banner := stdout.String()
	tokens := regexp.MustCompile(`export (NHS|COUNCIL)_TOKEN=(\S+)`).FindAllStringSubmatch(banner, -1)
	if len(tokens) != 2 || !strings.Contains(banner, "grpcurl") {
		t.Fatalf("banner lacks two tokens and a grpcurl example:\n%s", banner)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tok := range tokens {
		callCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok[2])
		_, err := careplanv1.NewCarePlanServiceClient(conn).GetCarePlan(callCtx, &careplanv1.GetCarePlanRequest{NhsNumber: "9434765919"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("%s token: GetCarePlan = %v, want NotFound (authenticated, no plan yet)", tok[1], err)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after shutdown, want nil (exit 0)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("server did not shut down")
	}
	if strings.Contains(stderr.String(), "9434765919") {
		t.Fatal("the logs carry an NHS number")
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no jwks outside dev mode", nil, "--jwks and --issuer are required"},
		{"dev mode off loopback", []string{"--dev", "--addr", "0.0.0.0:50051"}, "loopback only"},
		{"tls key without cert", []string{"--dev", "--tls-key", "k.pem"}, "--tls-cert and --tls-key go together"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out, &out, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestVerifyAuditCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "careplan.db")
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--dev", "--addr", "127.0.0.1:0", "--data", data}, &out, &out, ready)
	}()
	addr := <-ready
	tok := regexp.MustCompile(`export NHS_TOKEN=(\S+)`).FindStringSubmatch(out.String())[1]
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	callCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	for range 3 { // three audited reads of a missing plan
		_, _ = careplanv1.NewCarePlanServiceClient(conn).GetCarePlan(callCtx, &careplanv1.GetCarePlanRequest{NhsNumber: "9434765919"})
	}
	conn.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := verifyAudit([]string{"--data", data}, &stdout, &stderr); err != nil {
		t.Fatalf("verify-audit: %v", err)
	}
	if got := stdout.String(); got != "audit chain OK: 3 events\n" {
		t.Fatalf("verify-audit printed %q", got)
	}
}
