// Package postgres is the careplan store on PostgreSQL, for deployments that
// outgrow one machine and run stateless server replicas. It keeps the same
// contract as boltstore and passes the same conformance suite: every change
// is one transaction (plan, version, indexes, revision, request key, audit
// event), every version is kept, the etag is checked inside the
// transaction, and revisions and audit sequences are gap-free, in commit
// order. Its schema is migrated at Open.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/careplan/careplan/store"
)

// Options tune the store. The zero value is usable.
type Options struct {
	// MaxConns caps the pool; 0 keeps pgx's default (4 or the CPU count).
	MaxConns int32
	// PollInterval is how often WaitRevision callers are woken from the
	// database even without a notification, so a lost NOTIFY (a dropped
	// listening connection) delays a watcher by at most this. It is also
	// how often an unhealthy store checks whether it has recovered.
	// Default 1s.
	PollInterval time.Duration
	// Observer, when set, hears of every group commit (for metrics).
	Observer store.CommitObserver
}

// Store is a store.Store on PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
	// listenCfg opens the dedicated LISTEN connection; the pool's
	// connections come and go, so notifications need one of their own.
	listenCfg    *pgxpool.Config
	pollInterval time.Duration
	observer     store.CommitObserver

	// rev is the latest revision known to be committed, by any replica.
	rev store.RevisionSignal

	writable atomic.Bool
	healthMu sync.Mutex
	onHealth func(writable bool)

	// groupTimeout bounds one shared transaction (see commitGroup); tests
	// shorten it.
	groupTimeout time.Duration

	// ops queues writes for commitLoop (unbuffered: a send succeeds only
	// while the loop runs).
	ops           chan *op
	commitStopped chan struct{}

	closing   chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

var (
	_ store.Store          = (*Store)(nil)
	_ store.HealthReporter = (*Store)(nil)
)

// Open connects to the database named by dsn (a postgres:// URL or
// key=value string), applies any pending schema migrations, and starts
// listening for revisions committed by other replicas.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	pool, err := newPool(ctx, dsn, opts)
	if err != nil {
		return nil, err
	}
	if _, err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate schema: %w", unavailable(err))
	}
	s := &Store{
		pool:          pool,
		listenCfg:     pool.Config(),
		pollInterval:  opts.PollInterval,
		observer:      opts.Observer,
		groupTimeout:  groupTimeout,
		ops:           make(chan *op),
		commitStopped: make(chan struct{}),
		closing:       make(chan struct{}),
		stopped:       make(chan struct{}),
	}
	s.writable.Store(true)
	if _, err := s.Revision(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	go s.watch()
	go s.commitLoop()
	return s, nil
}

// Migrate applies pending schema migrations and returns the versions it
// applied, for a migrate command run before the servers start. Open does
// the same, so running it is optional.
func Migrate(ctx context.Context, dsn string) ([]int, error) {
	pool, err := newPool(ctx, dsn, Options{MaxConns: 1})
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	applied, err := migrate(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("migrate schema: %w", unavailable(err))
	}
	return applied, nil
}

func newPool(ctx context.Context, dsn string, opts Options) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error quotes the DSN (password masked); say less.
		return nil, fmt.Errorf("parse PostgreSQL DSN: %v", errors.Unwrap(err))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, unavailable(err)
	}
	return pool, nil
}

// Close stops listening and closes every connection.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.stopped
		<-s.commitStopped
		s.pool.Close()
	})
	return nil
}

// errClosed is returned by calls on a closed store.
var errClosed = fmt.Errorf("%w: store is closed", store.ErrUnavailable)

// mapErr turns a driver error into the store's: domain errors and the
// caller's own cancellation pass through; constraint violations become
// domain errors; anything else means the database could not be reached or
// refused the work, so store.ErrUnavailable.
func (s *Store) mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if store.IsRefusal(err) || errors.Is(err, store.ErrInvalidRecord) {
		return err
	}
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pe.Code {
		case "23505": // unique_violation: a racing create of the same plan
			return store.ErrAlreadyExists
		case "23503": // foreign_key_violation: the plan version named is missing
			return store.ErrNotFound
		}
	}
	select {
	case <-s.closing:
		return errClosed
	default:
	}
	return unavailable(err)
}

// unavailable wraps err as store.ErrUnavailable. A connection error names
// the user and database it tried; only its cause is kept.
func unavailable(err error) error {
	if ce, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return fmt.Errorf("%w: connect to PostgreSQL: %v", store.ErrUnavailable, errors.Unwrap(ce))
	}
	if errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
}
