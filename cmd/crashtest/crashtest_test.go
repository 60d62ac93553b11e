package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/careplan/careplan/store/postgres/pgtest"
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

// TestFailoverShort runs two replicas on one PostgreSQL database and kills
// one per cycle: clients move to the other and no acknowledged write is
// lost. It needs a PostgreSQL (CI starts one with .ci/with-postgres).
func TestFailoverShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary; skipped with -short")
	}
	dsn := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	cfg := config{
		Cycles: 2, Writers: 4, MinRun: 400 * time.Millisecond, MaxRun: 800 * time.Millisecond,
		Seed: 1, ShutdownTimeout: 5 * time.Second, Out: testWriter{t},
	}
	sum, err := runFailover(ctx, cfg, dsn)
	t.Log(sum)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Cycles != 2 || sum.AckedAfterKill == 0 || sum.Lost != 0 {
		t.Fatalf("%v", sum)
	}
}
