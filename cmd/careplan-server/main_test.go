package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// TestDevModeServesPrintedTokensAndShutsDown runs the binary's run() as
// `--dev` does, uses the tokens it prints, then cancels (as SIGTERM does)
// and expects a clean exit.
func TestDevModeServesPrintedTokensAndShutsDown(t *testing.T) {
	r := startServer(t)
	if !strings.Contains(r.stdout.String(), "grpcurl") {
		t.Fatalf("banner lacks a grpcurl example:\n%s", r.stdout.String())
	}
	plans := r.plans()
	for _, who := range []string{"NHS", "COUNCIL"} {
		_, err := plans.GetCarePlan(r.as(who), &careplanv1.GetCarePlanRequest{NhsNumber: "9434765919"})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("%s token: GetCarePlan = %v, want NotFound (authenticated, no plan yet)", who, err)
		}
	}
	if err := r.stop(); err != nil {
		t.Fatalf("run returned %v after shutdown, want nil (exit 0)", err)
	}
	if strings.Contains(r.stderr.String(), "9434765919") {
		t.Fatal("the logs carry an NHS number")
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no trust outside dev mode", nil, "--jwks and --issuer (or --config) are required"},
		{"jwks without issuer", []string{"--jwks", "keys.json"}, "--jwks and --issuer (or --config) are required"},
		{"dev mode off loopback", []string{"--dev", "--addr", "0.0.0.0:50051"}, "loopback only"},
		{"tls key without cert", []string{"--dev", "--tls-key", "k.pem"}, "--tls-cert and --tls-key go together"},
		{"negative request retention", []string{"--dev", "--request-retention", "-1h"}, "--request-retention must not be negative"},
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
	r := startServer(t)
	plans := r.plans()
	for range 3 { // three audited reads of a missing plan
		_, _ = plans.GetCarePlan(r.as("NHS"), &careplanv1.GetCarePlanRequest{NhsNumber: "9434765919"})
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := verifyAudit(context.Background(), []string{"--data", r.data}, &stdout, &stderr); err != nil {
		t.Fatalf("verify-audit: %v", err)
	}
	if got := stdout.String(); got != "audit chain OK: 3 events\n" {
		t.Fatalf("verify-audit printed %q", got)
	}
}
