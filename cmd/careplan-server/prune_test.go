package main

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// TestRequestKeysExpire: a retry with the same request_id returns the first
// result while the key is kept, and is a new write once --request-retention
// has passed (here the plan exists, so ALREADY_EXISTS).
func TestRequestKeysExpire(t *testing.T) {
	r := startServer(t, "--request-retention", "1s")
	plans := r.plans()
	nhs := fixture.NHSNumber(42)
	req := &careplanv1.CreateCarePlanRequest{CarePlan: fixture.TrustPlan(nhs), RequestId: "create-42"}
	first, err := plans.CreateCarePlan(r.as("NHS"), req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := plans.CreateCarePlan(r.as("NHS"), req)
	if err != nil || !proto.Equal(again, first) {
		t.Fatalf("immediate retry = %v; want the first result", err)
	}
	// Pruning runs every second here; give it ten.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = plans.CreateCarePlan(r.as("NHS"), req)
		if status.Code(err) == codes.AlreadyExists || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("retry after the retention = %v; want ALREADY_EXISTS (the key forgotten)", err)
	}
	got, err := plans.GetCarePlan(r.as("NHS"), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	if err != nil || got.GetVersion() != 1 {
		t.Fatalf("the plan after pruning: %v, %v; want version 1", got, err)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	logs := r.stderr.String()
	var line string
	for l := range strings.Lines(logs) {
		if strings.Contains(l, `"msg":"request keys pruned"`) {
			line = l
		}
	}
	if !strings.Contains(line, `"count":1`) {
		t.Fatalf("no log line for the one pruned key:\n%s", logs)
	}
	if strings.Contains(logs, nhs) || strings.Contains(line, "create-42") {
		t.Fatalf("the logs name the plan, or the prune line names the key:\n%s", logs)
	}
}
