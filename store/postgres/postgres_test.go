package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/postgres/pgtest"
	"github.com/careplan/careplan/store/storetest"
)

func open(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, Options{PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	pgtest.AdminDSN(t) // skip once, not in every case
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store { return open(t, pgtest.NewDatabase(t)) },
		Reopen: func(t *testing.T, s store.Store) store.Store {
			dsn := s.(*Store).pool.Config().ConnString()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, dsn)
		},
	})
}

// TestConcurrentOpen starts four replicas on one empty database at once:
// the advisory lock lets each migration run exactly once.
func TestConcurrentOpen(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(context.Background(), dsn, Options{})
			if err == nil {
				err = s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	all, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, dsn)
	var n, latest int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &latest); err != nil {
		t.Fatal(err)
	}
	if n != len(all) || latest != len(all) {
		t.Fatalf("schema_migrations holds %d rows up to version %d; want each of %d once", n, latest, len(all))
	}
	if applied, err := Migrate(context.Background(), dsn); err != nil || len(applied) != 0 {
		t.Fatalf("Migrate on a current schema = %v, %v; want nothing applied", applied, err)
	}
}

// TestVerifyAudit alters the stored log behind the store's back and checks
// that VerifyAudit names the broken link.
func TestVerifyAudit(t *testing.T) {
	pgtest.AdminDSN(t)
	tests := []struct {
		name   string
		tamper func(ctx context.Context, s *Store) error
		want   string
	}{
		{"intact", func(context.Context, *Store) error { return nil }, ""},
		{"body altered", func(ctx context.Context, s *Store) error {
			var body []byte
			if err := s.pool.QueryRow(ctx, `SELECT body FROM audit WHERE sequence = 2`).Scan(&body); err != nil {
				return err
			}
			ev := &careplanv1.AuditEvent{}
			if err := proto.Unmarshal(body, ev); err != nil {
				return err
			}
			ev.Outcome = "PERMISSION_DENIED"
			body, err := store.MarshalAudit(ev)
			if err != nil {
				return err
			}
			_, err = s.pool.Exec(ctx, `UPDATE audit SET body = $1 WHERE sequence = 2`, body)
			return err
		}, "between sequence 2 and 3"},
		{"event removed", func(ctx context.Context, s *Store) error {
			_, err := s.pool.Exec(ctx, `DELETE FROM audit WHERE sequence = 2`)
			return err
		}, "at sequence 3: expected sequence 2"},
		{"last event removed", func(ctx context.Context, s *Store) error {
			_, err := s.pool.Exec(ctx, `DELETE FROM audit WHERE sequence = 3`)
			return err
		}, "recorded head does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := pgtest.NewDatabase(t)
			s := open(t, dsn)
			nhs := fixture.NHSNumber(1)
			actor := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg}
			p, err := s.Create(ctx, store.Write{Plan: fixture.Plan(nhs), Actor: actor, Audit: &careplanv1.AuditEvent{Method: "Create"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.AppendAudit(ctx, &careplanv1.AuditEvent{Method: "Get", NhsNumber: p.GetNhsNumber()}, &careplanv1.AuditEvent{Method: "List"}); err != nil {
				t.Fatal(err)
			}
			if err := tc.tamper(ctx, s); err != nil {
				t.Fatal(err)
			}
			n, err := VerifyAudit(ctx, dsn)
			if tc.want == "" {
				if err != nil || n != 3 {
					t.Fatalf("VerifyAudit = %d, %v; want 3 events, no error", n, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyAudit error = %v; want one containing %q", err, tc.want)
			}
		})
	}
}

// TestRevisionOrder has 16 writers commit at once while a reader follows
// the change feed: revisions must become visible in order, so the reader
// never sees a revision before every earlier one, and the feed ends up
// 1..N without gaps.
func TestRevisionOrder(t *testing.T) {
	ctx := context.Background()
	s := open(t, pgtest.NewDatabase(t))
	const writers, perWriter = 16, 5
	actor := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg}

	done := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		var last int64
		for {
			evs, err := s.Events(ctx, last, 1000)
			if err != nil {
				readErr <- err
				return
			}
			for _, ev := range evs {
				if ev.GetRevision() != last+1 {
					readErr <- fmt.Errorf("reader saw revision %d after %d", ev.GetRevision(), last)
					return
				}
				last = ev.GetRevision()
			}
			select {
			case <-done:
				readErr <- nil
				return
			default:
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				nhs := fixture.NHSNumber(1000 + w*perWriter + i)
				if _, err := s.Create(ctx, store.Write{Plan: fixture.Plan(nhs), Actor: actor, Audit: &careplanv1.AuditEvent{Method: "Create"}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != writers*perWriter {
		t.Fatalf("Events = %d, want %d", len(evs), writers*perWriter)
	}
	audit, _, err := s.ListAudit(ctx, store.AuditQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		if ev.GetRevision() != int64(i+1) {
			t.Fatalf("Events[%d].revision = %d: gap", i, ev.GetRevision())
		}
		// Each write's audit event is committed with its revision, so the
		// two logs list the writes in the same order.
		if audit[i].GetNhsNumber() != ev.GetNhsNumber() {
			t.Fatalf("audit sequence %d is about another write than revision %d", audit[i].GetSequence(), ev.GetRevision())
		}
	}
}

// TestUnavailable checks that a database that cannot be reached yields
// store.ErrUnavailable without the DSN's password.
func TestUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://careplan:s3cret@127.0.0.1:1/careplan?sslmode=disable&connect_timeout=2", Options{})
	if !errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("Open of an unreachable database: %v; want ErrUnavailable without the password", err)
	}
}

// TestWaitRevisionAcrossReplicas wakes a watcher on one replica by a commit
// on another. The watcher's poll is too slow to matter, so the wake-up can
// only come from the NOTIFY sent with the commit.
func TestWaitRevisionAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	writer := open(t, dsn)
	watcher, err := Open(ctx, dsn, Options{PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = watcher.Close() })
	time.Sleep(100 * time.Millisecond) // let the watcher's LISTEN take effect
	done := make(chan error, 1)
	go func() { done <- watcher.WaitRevision(ctx, 0) }()
	actor := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg}
	if _, err := writer.Create(ctx, store.Write{Plan: fixture.Plan(fixture.NHSNumber(1)), Actor: actor}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the other replica's commit did not wake WaitRevision")
	}
}
