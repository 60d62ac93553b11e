package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/careplan/careplan/internal/group"
	"github.com/careplan/careplan/store"
)

// Every write, and every read (its audit event is durable before the
// reply), is a transaction that holds the counters row until it commits.
// One transaction per call serialised all callers, across replicas, behind
// that row and a WAL flush each. So the calls that arrive while a
// transaction runs are gathered, as boltstore's commit loop gathers its
// writes, and committed in one transaction: one lock, one commit, one
// flush.

// maxGroup caps the calls that share one transaction.
const maxGroup = 256

// groupTimeout bounds a shared transaction. It does not follow any one
// caller's context, so a caller that gives up cannot fail the others.
const groupTimeout = 10 * time.Second

// txFunc runs inside a write transaction shared with other calls. As in
// boltstore, it must make every check before its first write, so that a
// domain error (see store.IsRefusal) leaves the transaction untouched; any
// other error aborts the whole group. It may run more than once (alone,
// after its group failed), so it must set its results afresh on every run.
// It must use w.ctx, the group's context, for every statement.
type txFunc func(w *writeTx) error

// op is one call waiting for its transaction.
type op struct {
	ctx  context.Context
	fn   txFunc
	done chan error
}

// write queues fn for the commit loop and waits for its transaction to
// commit (or fail).
func (s *Store) write(ctx context.Context, fn txFunc) error {
	o := &op{ctx: ctx, fn: fn, done: make(chan error, 1)}
	return group.Submit(ctx, s.ops, o, o.done, s.closing, errClosed)
}

// commitLoop commits the queued calls until the store closes, each group
// in one transaction (see group.Fill).
func (s *Store) commitLoop() {
	defer close(s.commitStopped)
	batch := make([]*op, 0, maxGroup)
	for {
		batch = batch[:0]
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		case <-s.closing:
			return
		}
		batch = group.Fill(batch, s.ops, maxGroup)
		s.commitGroup(batch)
	}
}

// errRefusedAfterWriting aborts a group whose call broke txFunc's contract;
// the calls are then retried alone, where a refusal rolls back.
var errRefusedAfterWriting = errors.New("postgres: a refused call had already written")

// commitGroup commits batch in one transaction, and returns the error of
// the transaction, if it failed. If the transaction is rolled back, each
// call is tried alone, so that one bad call cannot fail the others; but
// not after COMMIT was sent (the group may have been written: a retry
// would write it twice), nor after the group timed out (the database is
// slow; no call is to blame). Once a call tried alone times out, or the
// store is closing, the calls left are failed with that, not tried: each
// could wait the whole timeout, holding up the loop and Close.
func (s *Store) commitGroup(batch []*op) error {
	live := make([]*op, 0, len(batch))
	for _, o := range batch {
		// Nothing is committed for a caller whose deadline has passed.
		if err := o.ctx.Err(); err != nil {
			o.done <- err
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.groupTimeout)
	defer cancel()
	results := make([]error, len(live))
	start := time.Now()
	err := s.runTx(ctx, func(w *writeTx) error {
		for i, o := range live {
			queued := w.queued
			err := o.fn(w)
			switch {
			case err == nil:
			case len(live) == 1:
				return err // alone, any error rolls the transaction back
			case !store.IsRefusal(err):
				return err
			case w.queued != queued:
				return errRefusedAfterWriting
			default:
				results[i] = err
			}
		}
		return nil
	})
	err, dbFault := s.txErr(ctx, err)
	if s.observer != nil {
		s.observe(results, time.Since(start), err, dbFault)
	}
	if err != nil && len(live) > 1 && !stalled(err) {
		var stop error
		for _, o := range live {
			if stop == nil {
				select {
				case <-s.closing:
					stop = errClosed
				default:
				}
			}
			if stop != nil {
				o.done <- stop
				continue
			}
			// The next call alone would wait as long.
			if err := s.commitGroup([]*op{o}); stalled(err) {
				stop = errTimedOut
			}
		}
		return err
	}
	for i, o := range live {
		if err != nil {
			results[i] = err
		}
		o.done <- results[i]
	}
	return err
}

// Why a transaction failed, when no call is to blame.
var (
	errCommitUnknown = fmt.Errorf("%w (the connection failed during COMMIT)", store.ErrOutcomeUnknown)
	errTimedOut      = fmt.Errorf("%w: the transaction did not finish in time", store.ErrUnavailable)
)

// stalled reports a transaction that timed out or lost its COMMIT: no call
// is to blame, and retrying its calls alone would either write them twice
// or wait as long again.
func stalled(err error) bool {
	return errors.Is(err, errTimedOut) || errors.Is(err, errCommitUnknown)
}

// commitError marks an error from COMMIT itself.
type commitError struct{ err error }

func (e commitError) Error() string { return "commit: " + e.err.Error() }
func (e commitError) Unwrap() error { return e.err }

// txErr turns runTx's error into what the callers get. Unless a call is to
// blame (a refusal, or callFault), the database failed: it marks the store
// unhealthy and reports dbFault. It does not ask mapErr about ctx: that is
// the group's, and its end is errTimedOut, not a caller's deadline.
func (s *Store) txErr(ctx context.Context, err error) (_ error, dbFault bool) {
	var ce commitError
	switch {
	case err == nil:
		return nil, false
	case errors.As(err, &ce) && !answered(ce.err):
		err = fmt.Errorf("%w: %v", errCommitUnknown, ce.err)
	case ctx.Err() != nil:
		err = errTimedOut
	default:
		blamed := callFault(err)
		err = s.mapErr(context.Background(), err)
		if blamed || store.IsRefusal(err) {
			return err, false
		}
	}
	s.setWritable(false)
	return err, true
}

// answered reports an error PostgreSQL itself returned: the transaction
// was rolled back, and nothing of it was stored. Anything else from COMMIT
// is in doubt, even an error pgconn calls SafeToRetry: a connection that
// failed while its COMMIT was in flight reports "conn closed", which it
// counts as safe (TestCommitOutcomeUnknown).
func answered(err error) bool {
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		return true
	}
	// Only an ERROR rolls back. A FATAL (say, the backend terminated
	// while COMMIT waited for a synchronous standby) can come after the
	// commit has happened locally.
	pe, ok := errors.AsType[*pgconn.PgError](err)
	return ok && cmp.Or(pe.SeverityUnlocalized, pe.Severity) == "ERROR"
}

// observe reports a group commit: the calls it stored, or a failure of the
// database.
func (s *Store) observe(results []error, took time.Duration, err error, dbFault bool) {
	if err != nil {
		if dbFault {
			s.observer.ObserveCommit(len(results), took, err)
		}
		return
	}
	stored := 0
	for _, r := range results {
		if r == nil {
			stored++
		}
	}
	if stored > 0 {
		s.observer.ObserveCommit(stored, took, nil)
	}
}

// runTx runs fn in one transaction, which first locks the single counters
// row: that serialises writers exactly as bbolt's single writer does, so
// each sees every earlier commit, checks (etag, existence, request key)
// cannot race, and revisions and audit sequences are allocated gap-free in
// the order the transactions commit and become visible. An error from
// COMMIT is a commitError: the transaction may have been stored.
func (s *Store) runTx(ctx context.Context, fn txFunc) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	w := &writeTx{ctx: ctx, tx: tx}
	if err := w.run(fn); err != nil {
		// A rollback that fails closes the connection, which rolls back.
		_ = tx.Rollback(ctx)
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return commitError{err}
	}
	if w.revised {
		s.rev.Publish(w.revision)
	}
	return nil
}

// run locks the counters, runs fn, and sends the writes, all but COMMIT.
func (w *writeTx) run(fn txFunc) error {
	err := w.tx.QueryRow(w.ctx, `SELECT revision, audit_seq, audit_head FROM counters FOR UPDATE`).
		Scan(&w.revision, &w.auditSeq, &w.auditHead)
	if err != nil {
		return err
	}
	if err := fn(w); err != nil {
		return err
	}
	if !w.revised && !w.audited {
		return nil
	}
	w.queue(`UPDATE counters SET revision = $1, audit_seq = $2, audit_head = $3`, w.revision, w.auditSeq, w.auditHead)
	if w.revised {
		w.queue(`SELECT pg_notify($1, $2)`, revisionChannel, strconv.FormatInt(w.revision, 10))
	}
	return w.flush()
}

// callFault reports an error over what a call sent: one PostgreSQL raised
// (SQLSTATE class 22, data exception, or 23, integrity constraint), a
// record that cannot be encoded, or a contract broken here. The database
// is fine, so health stays as it is.
func callFault(err error) bool {
	if errors.Is(err, errRefusedAfterWriting) || errors.Is(err, store.ErrInvalidRecord) {
		return true
	}
	pe, ok := errors.AsType[*pgconn.PgError](err)
	return ok && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}
