package postgres

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/postgres/pgtest"
)

// commitLog records the group commits a store reports.
type commitLog struct {
	mu     sync.Mutex
	groups []int // calls per successful commit
	failed int
}

func (c *commitLog) ObserveCommit(ops int, _ time.Duration, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.failed++
		return
	}
	c.groups = append(c.groups, ops)
}

// healthLog records a store's health changes.
type healthLog struct {
	mu      sync.Mutex
	changes []bool
}

func watchHealth(s *Store) *healthLog {
	h := &healthLog{}
	s.OnHealthChange(func(ok bool) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.changes = append(h.changes, ok)
	})
	return h
}

func (h *healthLog) get() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.changes)
}

// openObserved opens a store on a fresh database, with a commitLog.
func openObserved(t *testing.T) (*Store, *commitLog) {
	t.Helper()
	log := &commitLog{}
	s, err := Open(context.Background(), pgtest.NewDatabase(t), Options{Observer: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, log
}

// race starts n calls at once and returns their errors.
func race(n int, call func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = call(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

func (c *commitLog) take() (groups []int, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	groups, failed = c.groups, c.failed
	c.groups, c.failed = nil, 0
	return groups, failed
}

// TestGroupCommit: concurrent calls share transactions, refusals among
// them included, without any group failing; a call whose SQL fails is
// retried alone and fails alone.
func TestGroupCommit(t *testing.T) {
	s, log := openObserved(t)
	ctx := context.Background()
	trust := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg, OrgType: careplanv1.Organisation_TYPE_NHS}
	created, err := s.Create(ctx, store.Write{Plan: fixture.Plan(fixture.NHSNumber(1)), Actor: trust})
	if err != nil {
		t.Fatal(err)
	}
	log.take()

	const calls = 32
	errs := race(calls, func(i int) error {
		if i%2 == 0 {
			return s.AppendAudit(ctx, &careplanv1.AuditEvent{Method: "Get", Subject: "reader"})
		}
		next := proto.Clone(created).(*careplanv1.CarePlan)
		next.WhatMatters = "raced"
		_, err := s.Update(ctx, store.Write{Plan: next, MatchEtag: created.GetEtag(), Actor: trust})
		return err
	})
	updated := 0
	for i, err := range errs {
		switch {
		case err == nil && i%2 == 1:
			updated++
		case err != nil && (i%2 == 0 || !errors.Is(err, store.ErrEtagMismatch)):
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if updated != 1 {
		t.Fatalf("%d updates on one etag succeeded, want 1", updated)
	}
	groups, failed := log.take()
	total := 0
	for _, g := range groups {
		total += g
	}
	// Each commit counts the calls it stored: the audit appends and the
	// one update, not the refused updates.
	if want := calls/2 + 1; failed != 0 || total != want || slices.Max(groups) < 2 {
		t.Fatalf("commits: %v (%d calls stored), %d failed; want the %d stored calls in groups, none failed", groups, total, failed, want)
	}

	// A call whose statement fails on what it sent aborts its group's
	// transaction; the others are retried alone and commit, and the store
	// still reports itself healthy.
	health := watchHealth(s)
	bad := errors.New("unset")
	errs = race(8, func(i int) error {
		if i == 0 {
			err := s.write(ctx, func(w *writeTx) error {
				var x int
				return w.queryRow(`SELECT 1 / (SELECT count(*) FROM counters WHERE false)`).Scan(&x)
			})
			bad = err
			return nil
		}
		return s.AppendAudit(ctx, &careplanv1.AuditEvent{Method: "Get", Subject: "reader"})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d beside a failing one: %v", i, err)
		}
	}
	if !errors.Is(bad, store.ErrUnavailable) || !strings.Contains(bad.Error(), "division by zero") {
		t.Fatalf("the failing call got %v, want ErrUnavailable for the division by zero", bad)
	}
	if changes := health.get(); len(changes) != 0 || !s.writable.Load() {
		t.Fatalf("health changed %v after one call's bad statement; want it left healthy", changes)
	}
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM audit`).Scan(&n); err != nil || n != calls/2+7 {
		t.Fatalf("audit rows = %d, %v; want %d", n, err, calls/2+7)
	}
}

// TestCommitOutcomeUnknown: the connection fails after COMMIT was sent,
// and the group was stored. Its calls must hear UNAVAILABLE (in doubt), and
// must not be retried: a retry would store their events a second time.
func TestCommitOutcomeUnknown(t *testing.T) {
	s, log := openObserved(t)
	ctx := context.Background()
	health := watchHealth(s)
	// The store's connections lose the reply to each COMMIT.
	var armed atomic.Bool
	throughDropper(t, s, &armed, 0)
	armed.Store(true)
	const calls = 6
	errs := race(calls, func(int) error {
		return s.AppendAudit(ctx, &careplanv1.AuditEvent{Method: "Get", Subject: "reader"})
	})
	armed.Store(false)
	for i, err := range errs {
		if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, errCommitUnknown) {
			t.Fatalf("call %d: %v, want ErrUnavailable saying the outcome is unknown", i, err)
		}
	}
	// Every call went through COMMIT once, in however many groups.
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM audit`).Scan(&n); err != nil || n != calls {
		t.Fatalf("audit rows = %d, %v; want %d, each event stored once", n, err, calls)
	}
	if _, failed := log.take(); failed == 0 || len(health.get()) == 0 || health.get()[0] {
		t.Fatalf("%d failed commits observed, health changes %v; want failures and the store marked unhealthy", failed, health.get())
	}
}

// TestGroupTimeout: a transaction that cannot get the counters row within
// the group timeout fails its calls with UNAVAILABLE, not with a deadline
// none of them set, once for the group rather than once per call.
func TestGroupTimeout(t *testing.T) {
	s, log := openObserved(t)
	ctx := context.Background()
	// Another replica holds the counters row.
	holder, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, `SELECT 1 FROM counters FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	s.groupTimeout = 300 * time.Millisecond
	const calls = 6
	errs := race(calls, func(int) error {
		return s.AppendAudit(ctx, &careplanv1.AuditEvent{Method: "Get", Subject: "reader"})
	})
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if !errors.Is(err, errTimedOut) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: %v, want ErrUnavailable (timed out), not a caller's deadline", i, err)
		}
	}
	groups, failed := log.take()
	if len(groups) != 0 || failed == 0 || failed >= calls {
		t.Fatalf("observed %v stored and %d failed commits; want fewer failures than calls (no retry alone) and nothing stored", groups, failed)
	}
	s.groupTimeout = groupTimeout
	if err := s.AppendAudit(ctx, &careplanv1.AuditEvent{Method: "Get", Subject: "reader"}); err != nil {
		t.Fatalf("after the lock was released: %v", err)
	}
}

// TestRetriesStopAfterTimeout: a group fails over one bad call, and then
// the database stops answering in time: another connection takes the
// counters row, or COMMIT stalls. Once one call tried alone times out,
// the others are failed at once rather than each waiting out the timeout
// in turn.
func TestRetriesStopAfterTimeout(t *testing.T) {
	t.Run("counters row taken", func(t *testing.T) {
		retriesStop(t, func(s *Store, failing <-chan struct{}) func() {
			locked := make(chan pgx.Tx, 1)
			go func() {
				<-failing
				// Waits for the failing group to roll back, then holds the row.
				tx, err := s.pool.Begin(context.Background())
				if err == nil {
					_, err = tx.Exec(context.Background(), `SELECT 1 FROM counters FOR UPDATE`)
				}
				if err != nil {
					t.Error(err)
				}
				locked <- tx
			}()
			return func() {
				if tx := <-locked; tx != nil {
					_ = tx.Rollback(context.Background())
				}
			}
		})
	})
	t.Run("COMMIT stalls", func(t *testing.T) {
		var armed atomic.Bool
		retriesStop(t, func(s *Store, failing <-chan struct{}) func() {
			throughDropper(t, s, &armed, time.Second)
			go func() {
				<-failing
				armed.Store(true)
			}()
			return func() { armed.Store(false) }
		})
	})
}

// retriesStop runs TestRetriesStopAfterTimeout with stall, which sets the
// database up to stop answering in time once failing is closed, and
// returns a function that lets it answer again.
func retriesStop(t *testing.T, stall func(s *Store, failing <-chan struct{}) (release func())) {
	s, log := openObserved(t)
	ctx := context.Background()
	failing := make(chan struct{})
	release := sync.OnceFunc(stall(s, failing))
	t.Cleanup(release) // before the store's Close, which waits for every connection

	// A first call holds the commit loop until the others are queued, so
	// that they share the next group.
	entered, gate, gated := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		gated <- s.write(ctx, func(*writeTx) error {
			close(entered)
			<-gate
			return nil
		})
	}()
	<-entered
	s.groupTimeout = 300 * time.Millisecond // read by the loop for the next group
	go func() {
		time.Sleep(100 * time.Millisecond) // for the calls below to queue
		close(gate)
	}()
	const calls = 16
	errs := race(calls, func(i int) error {
		if i == 0 {
			return s.write(ctx, func(w *writeTx) error {
				select {
				case <-failing:
				default:
					close(failing)
				}
				var x int
				return w.queryRow(`SELECT 1 / (SELECT count(*) FROM counters WHERE false)`).Scan(&x)
			})
		}
		return s.AppendAudit(ctx, &careplanv1.AuditEvent{Method: "Get", Subject: "reader"})
	})
	if err := <-gated; err != nil {
		t.Fatal(err)
	}
	release()
	failed := 0
	for _, err := range errs {
		if errors.Is(err, errTimedOut) || errors.Is(err, errCommitUnknown) {
			failed++
		}
	}
	// Without the stop, every call tried alone would wait out the timeout
	// in turn, and each would be observed as a failed commit. (The bad
	// call, tried alone first, may fail on its own statement before the
	// database stops answering.)
	if _, observed := log.take(); observed != 1 || failed < calls-1 {
		t.Fatalf("%d of %d calls failed for time, %d failed commits observed; want all but the bad one at least, after one lone retry", failed, calls, observed)
	}
}

// throughDropper reconnects s's pool through commitDroppers sharing armed
// and stall. Call it before any call: the loop reads s.pool only for one.
func throughDropper(t *testing.T, s *Store, armed *atomic.Bool, stall time.Duration) {
	t.Helper()
	cfg := s.pool.Config()
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		return &commitDropper{Conn: c, armed: armed, stall: stall}, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	old := s.pool
	s.pool = pool
	old.Close()
}

// commitDropper is a connection that, while armed, loses the reply to a
// COMMIT: the commit has happened (the reply is sent after it), but the
// client never learns so. With stall set it holds the reply back that
// long instead, as a stalled WAL flush or synchronous standby would.
type commitDropper struct {
	net.Conn
	armed   *atomic.Bool
	stall   time.Duration
	dropped atomic.Bool // a COMMIT was sent: drop what comes back
}

func (c *commitDropper) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err == nil && c.armed.Load() && bytes.Contains(bytes.ToLower(b), []byte("commit")) {
		c.dropped.Store(true)
	}
	return n, err
}

func (c *commitDropper) Read(b []byte) (int, error) {
	if c.stall > 0 && c.dropped.Swap(false) {
		time.Sleep(c.stall) // a deadline pgx set meanwhile then fails the read
		return c.Conn.Read(b)
	}
	n, err := c.Conn.Read(b)
	if c.dropped.Load() {
		_ = c.Conn.Close()
		return 0, errors.New("connection lost")
	}
	return n, err
}

// TestAnswered: only an ERROR from COMMIT, or pgx's report that COMMIT
// rolled back, proves nothing was stored. A FATAL can follow a commit that
// happened (the backend terminated while waiting for a synchronous
// standby), and a lost connection proves nothing.
func TestAnswered(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "40001"}, true},
		{pgx.ErrTxCommitRollback, true},
		{&pgconn.PgError{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01"}, false},
		{&pgconn.PgError{Severity: "FEHLER", SeverityUnlocalized: "ERROR"}, true}, // a localised server
		{errors.New("conn closed"), false},
	} {
		if got := answered(tc.err); got != tc.want {
			t.Errorf("answered(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
