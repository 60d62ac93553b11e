package postgres

import (
	"context"
	"errors"
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
	select {
	case s.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return errClosed
	}
	// Once taken, the outcome is reported even if ctx ends meanwhile: the
	// call may be in a transaction that commits.
	return <-o.done
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

// commitGroup commits batch in one transaction. If it fails, each call is
// tried alone, so that one bad call cannot fail the others.
func (s *Store) commitGroup(batch []*op) {
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
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), groupTimeout)
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
	// A lone call's refusal rolls back as designed; any other error is a
	// failed commit (a group's constraint violation, too).
	if s.observer != nil && (err == nil || len(live) > 1 || !store.IsRefusal(s.mapErr(ctx, err))) {
		s.observer.ObserveCommit(len(live), time.Since(start), err)
	}
	if err != nil && len(live) > 1 {
		for _, o := range live {
			s.commitGroup([]*op{o})
		}
		return
	}
	for i, o := range live {
		if err != nil {
			results[i] = s.mapErr(ctx, err)
		}
		o.done <- results[i]
	}
}

// runTx runs fn in one transaction, which first locks the single counters
// row: that serialises writers exactly as bbolt's single writer does, so
// each sees every earlier commit, checks (etag, existence, request key)
// cannot race, and revisions and audit sequences are allocated gap-free in
// the order the transactions commit and become visible.
func (s *Store) runTx(ctx context.Context, fn txFunc) error {
	var w *writeTx
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		w = &writeTx{ctx: ctx, tx: tx}
		err := tx.QueryRow(ctx, `SELECT revision, audit_seq, audit_head FROM counters FOR UPDATE`).
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
	})
	if err != nil {
		if !store.IsRefusal(s.mapErr(ctx, err)) && !callFault(err) {
			s.setWritable(false)
		}
		return err
	}
	if w.revised {
		s.rev.Publish(w.revision)
	}
	return nil
}

// callFault reports an error that PostgreSQL raised over what a call sent
// (SQLSTATE class 22, data exception, or 23, integrity constraint) or over
// a contract broken here: the database is fine, so health stays as it is.
func callFault(err error) bool {
	if errors.Is(err, errRefusedAfterWriting) {
		return true
	}
	pe, ok := errors.AsType[*pgconn.PgError](err)
	return ok && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23"))
}
