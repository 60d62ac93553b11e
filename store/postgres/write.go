package postgres

import (
	"context"
	"crypto/sha256"

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
	// writes holds the inserts and updates not yet sent. They depend on
	// nothing read back, so they go to the server in one round trip (see
	// flush) instead of one each: the counters row is held for fewer round
	// trips.
	writes pgx.Batch
	// queued counts the writes ever queued, so that the commit loop can
	// tell whether a refused call wrote anything.
	queued int
}

// queue adds a write to the transaction's batch.
func (w *writeTx) queue(sql string, args ...any) {
	w.writes.Queue(sql, args...)
	w.queued++
}

// flush sends the queued writes.
func (w *writeTx) flush() error {
	if w.writes.Len() == 0 {
		return nil
	}
	err := w.tx.SendBatch(w.ctx, &w.writes).Close()
	w.writes = pgx.Batch{}
	return err
}

// queryRow reads inside the transaction, after the queued writes, so that
// a call sees what the calls before it in the same transaction wrote.
func (w *writeTx) queryRow(sql string, args ...any) pgx.Row {
	if err := w.flush(); err != nil {
		return errRow{err}
	}
	return w.tx.QueryRow(w.ctx, sql, args...)
}

// errRow is a pgx.Row whose Scan fails with err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

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
