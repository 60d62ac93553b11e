// Package pgtest gives tests a fresh database on a real PostgreSQL: the
// server named by CAREPLAN_TEST_POSTGRES, which .ci/with-postgres starts.
// Without it, tests that need PostgreSQL skip with a clear message.
package pgtest

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// EnvVar names the PostgreSQL server tests run against.
const EnvVar = "CAREPLAN_TEST_POSTGRES"

// AdminDSN returns the server to test against, or skips the test.
func AdminDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvVar)
	if dsn == "" {
		t.Skip(EnvVar + " not set: start one with .ci/with-postgres go test ./...")
	}
	return dsn
}

// NewDatabase creates an empty database, dropped when the test ends, and
// returns its DSN.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminDSN(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvVar, err)
	}
	defer conn.Close(ctx)
	name := "careplan_test_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop database: %v", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database: %v", err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("%s must be a postgres:// URL: %v", EnvVar, err)
	}
	u.Path = "/" + name
	return u.String()
}
