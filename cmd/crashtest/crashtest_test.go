package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// testWriter sends the harness's per-cycle lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestCrashSafetyShort is the CI version of `go run ./cmd/crashtest`: the
// real server binary, two SIGKILLs and one SIGTERM under load, four writers.
func TestCrashSafetyShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary; skipped with -short")
	}
	// Bound the run well inside go test's own timeout, so the harness's
	// deferred kill of the server always runs.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cfg := config{
		Cycles:          3,
		Writers:         4,
		MinRun:          100 * time.Millisecond,
		MaxRun:          400 * time.Millisecond,
		Seed:            1,
		SigtermEvery:    3,
		ShutdownTimeout: 5 * time.Second,
		Dir:             t.TempDir(),
		Out:             testWriter{t},
	}
	start := time.Now()
	sum, err := run(ctx, cfg)
	t.Logf("%v in %v", sum, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Cycles != 3 || sum.SigKills != 2 || sum.SigTerms != 1 {
		t.Errorf("ran %d cycles (sigkill %d, sigterm %d); want 3 (2, 1)", sum.Cycles, sum.SigKills, sum.SigTerms)
	}
	if sum.Acked == 0 {
		t.Error("no write was acknowledged: the harness tested nothing")
	}
	if sum.Lost != 0 || sum.CheckFailed {
		t.Errorf("lost %d writes, tx.Check failed: %v; want neither", sum.Lost, sum.CheckFailed)
	}
}
