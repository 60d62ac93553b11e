package postgres

import (
	"context"
	"crypto/sha256"
	"strconv"

	"github.com/jackc/pgx/v5"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// revisionChannel is the NOTIFY channel each transaction that adds a
// revision signals; PostgreSQL delivers it only on commit.
const revisionChannel = "careplan_revision"

// maxAuditNHS bounds the nhs_number indexed for an audit event, as in
// boltstore: callers may send anything, and an over-long value stays in the
// event but not in the index.
const maxAuditNHS = 64

// writeTx is one write transaction holding the counters row. Functions
// that take it run inside the transaction.
type writeTx struct {
	ctx context.Context
	tx  pgx.Tx

	revision, auditSeq int64
	auditHead          []byte
	// revised and audited say which counters this transaction moved.
	revised, audited bool
	// writes holds the transaction's inserts and updates. They depend on
	// nothing read back, so they go to the server in one round trip at the
	// end (see write) instead of one each: the counters row is held for
	// fewer round trips.
	writes pgx.Batch
}

// queue adds a write to the transaction's batch.
func (w *writeTx) queue(sql string, args ...any) { w.writes.Queue(sql, args...) }

// write runs fn in one transaction, bound to ctx so that nothing commits
// after the caller's deadline. The transaction first locks the single
// counters row: that serialises writers exactly as bbolt's single writer
// does, so each sees every earlier commit, checks (etag, existence, request
// key) cannot race, and revisions and audit sequences are allocated
// gap-free in the order the transactions commit and become visible.
func (s *Store) write(ctx context.Context, fn func(w *writeTx) error) error {
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
		return tx.SendBatch(ctx, &w.writes).Close()
	})
	if err != nil {
		err = s.mapErr(ctx, err)
		if !store.IsRefusal(err) {
			s.setWritable(false)
		}
		return err
	}
	if w.revised {
		s.rev.Publish(w.revision)
	}
	return nil
}

// appendRevision gives ev the next revision and logs it. The logged event
// names the plan version only; Events hydrates it.
func (w *writeTx) appendRevision(ev *careplanv1.CarePlanEvent) error {
	ev.Revision = w.revision + 1
	body, err := marshal(ev)
	if err != nil {
		return err
	}
	w.queue(`INSERT INTO revisions (revision, nhs, version, body) VALUES ($1, $2, $3, $4)`,
		ev.GetRevision(), ev.GetNhsNumber(), ev.GetCarePlan().GetVersion(), body)
	w.revision, w.revised = ev.GetRevision(), true
	return nil
}

// appendAudit appends ev to the hash chain: its prev_hash is the SHA-256
// of the previous event's stored body. When p is not nil the event records
// a successful call on that plan version. A nil ev is a no-op.
func (w *writeTx) appendAudit(ev *careplanv1.AuditEvent, p *careplanv1.CarePlan) error {
	if ev == nil {
		return nil
	}
	if p != nil {
		ev.Outcome = "OK" // google.rpc.Code name, as the server records others
		ev.NhsNumber = p.GetNhsNumber()
		ev.PlanVersion = p.GetVersion()
	}
	ev.PrevHash = w.auditHead
	ev.Sequence = w.auditSeq + 1
	body, err := store.MarshalAudit(ev)
	if err != nil {
		return err
	}
	var nhs *string
	if n := ev.GetNhsNumber(); n != "" && len(n) <= maxAuditNHS {
		nhs = &n
	}
	w.queue(`INSERT INTO audit (sequence, body, nhs, org, time_ns) VALUES ($1, $2, $3, $4, $5)`,
		ev.GetSequence(), body, nhs, ev.GetOrgCode(), ev.GetTime().AsTime().UnixNano())
	head := sha256.Sum256(body)
	w.auditSeq, w.auditHead, w.audited = ev.GetSequence(), head[:], true
	return nil
}
