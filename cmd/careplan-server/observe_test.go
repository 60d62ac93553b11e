package main

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// TestMetricsAndSafeLogs drives calls through the real binary's run() and
// checks that /metrics has call and store metrics, and that the JSON logs
// name who called but never the NHS number, the person's names or the plan.
func TestMetricsAndSafeLogs(t *testing.T) {
	r := startServer(t, "--metrics-addr", "127.0.0.1:0")
	plans := r.plans()
	callCtx := r.as("NHS", "x-request-id", "trace-123")
	plan := fixture.TrustPlan(fixture.NHSNumber(5))
	if _, err := plans.CreateCarePlan(callCtx, &careplanv1.CreateCarePlanRequest{CarePlan: plan}); err != nil {
		t.Fatal(err)
	}
	_, _ = plans.GetCarePlan(callCtx, &careplanv1.GetCarePlanRequest{NhsNumber: plan.GetNhsNumber()})
	_, _ = plans.GetCarePlan(callCtx, &careplanv1.GetCarePlanRequest{NhsNumber: "943 476 5918"}) // invalid: fails
	bad := fixture.TrustPlan(fixture.NHSNumber(6))
	bad.Person.BirthDate = "not a date"
	_, _ = plans.CreateCarePlan(callCtx, &careplanv1.CreateCarePlanRequest{CarePlan: bad})

	maddr := regexp.MustCompile(`"msg":"metrics listening","addr":"([^"]+)"`).FindStringSubmatch(r.stderr.String())
	if maddr == nil {
		t.Fatalf("no metrics address logged:\n%s", r.stderr.String())
	}
	resp, err := http.Get("http://" + maddr[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="CreateCarePlan",grpc_service="careplan.v1.CarePlanService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="GetCarePlan"`,
		`grpc_server_handling_seconds_bucket{grpc_method="GetCarePlan"`,
		`careplan_store_commit_batch_ops_count`,
		`careplan_store_fsync_seconds_bucket`,
		`careplan_store_file_bytes`,
		`careplan_store_unmaps_total`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	logs := r.stderr.String()
	for _, secret := range []string{plan.GetNhsNumber(), "9434765918", "943 476 5918", bad.GetNhsNumber(), "Ada", "Example", "grandchildren"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs contain %q", secret)
		}
	}
	// Each finished call is one JSON line with who called, the request id,
	// the method and code, and how long it took.
	var saw bool
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if rec["msg"] == "finished call" && rec["grpc.method"] == "CreateCarePlan" {
			saw = true
			for _, k := range []string{"sub", "org", "request_id", "grpc.code", "grpc.time_ms"} {
				if rec[k] == nil {
					t.Errorf("finished-call log lacks %q: %s", k, line)
				}
			}
		}
	}
	if !saw {
		t.Fatal("no finished-call log line for CreateCarePlan")
	}
}
