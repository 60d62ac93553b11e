package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// AppendAudit implements store.Store. Concurrent calls share one
// transaction (see commitLoop).
func (s *Store) AppendAudit(ctx context.Context, events ...*careplanv1.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	return s.write(ctx, func(w *writeTx) error {
		for _, ev := range events {
			if err := w.appendAudit(ev, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// listAuditSQL is listPlansSQL's shape for audit events; %s is the scan's
// extra condition, so a plan's events are read through the audit_nhs index
// rather than through a generic plan that cannot use it. $1 after, $2 nhs,
// $3 start and $4 end in Unix nanoseconds (NULL = open), $5 org ("" = any),
// $6 limit, $7 maxScan.
const listAuditSQL = `
WITH scan AS (
	SELECT sequence, body, nhs, org, time_ns FROM audit
	WHERE sequence > $1 %s ORDER BY sequence LIMIT $7
), hits AS (
	SELECT sequence, body FROM scan
	WHERE ($3::bigint IS NULL OR time_ns >= $3)
	  AND ($4::bigint IS NULL OR time_ns < $4)
	  AND ($5 = '' OR org = $5 OR EXISTS (SELECT 1 FROM org_plans o WHERE o.org = $5 AND o.nhs = scan.nhs))
	ORDER BY sequence LIMIT $6 + 1
)
SELECT sc.n, sc.last, h.sequence, h.body
FROM (SELECT count(*) AS n, max(sequence) AS last FROM scan) sc
LEFT JOIN hits h ON true
ORDER BY h.sequence`

var (
	listAuditAllSQL = fmt.Sprintf(listAuditSQL, "AND $2::text IS NULL")
	listAuditNHSSQL = fmt.Sprintf(listAuditSQL, "AND nhs = $2")
)

// ListAudit implements store.Store.
func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]*careplanv1.AuditEvent, int64, error) {
	sql, nhs := listAuditAllSQL, (*string)(nil)
	if q.NhsNumber != "" {
		sql, nhs = listAuditNHSSQL, &q.NhsNumber
	}
	var start, end *int64
	if !q.Start.IsZero() {
		ns := q.Start.UnixNano()
		start = &ns
	}
	if !q.End.IsZero() {
		ns := q.End.UnixNano()
		end = &ns
	}
	rows, err := s.pool.Query(ctx, sql, q.AfterSequence, nhs, start, end, q.Org, q.Limit, maxScan)
	if err != nil {
		return nil, 0, s.mapErr(ctx, err)
	}
	defer rows.Close()
	var (
		out     []*careplanv1.AuditEvent
		scanned int
		last    *int64
		more    bool
	)
	for rows.Next() {
		var (
			seq  *int64
			body []byte
		)
		if err := rows.Scan(&scanned, &last, &seq, &body); err != nil {
			return nil, 0, s.mapErr(ctx, err)
		}
		if seq == nil {
			continue // nothing matched
		}
		if len(out) == q.Limit {
			more = true
			break
		}
		ev := &careplanv1.AuditEvent{}
		if err := proto.Unmarshal(body, ev); err != nil {
			return nil, 0, fmt.Errorf("decode audit event %d: %w", *seq, err)
		}
		out = append(out, ev)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, 0, s.mapErr(ctx, err)
	}
	lastOut := q.AfterSequence
	if len(out) > 0 {
		lastOut = out[len(out)-1].GetSequence()
	}
	return out, nextPage(more, lastOut, scanned, last), nil
}

// nextPage is where a list continues: after the last item returned when a
// further match exists, after the last row read when the scan budget ran
// out first, or nowhere (the zero value).
func nextPage[K any](more bool, lastReturned K, scanned int, lastScanned *K) K {
	switch {
	case more:
		return lastReturned
	case scanned == maxScan && lastScanned != nil:
		return *lastScanned
	}
	var none K
	return none
}

// VerifyAudit walks the audit hash chain in the database named by dsn,
// from one snapshot, while the servers run. It returns how many events it
// checked; the error names the first broken link.
func VerifyAudit(ctx context.Context, dsn string) (int64, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return 0, fmt.Errorf("parse PostgreSQL DSN: %v", errors.Unwrap(err))
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, unavailable(err)
	}
	defer conn.Close(context.Background())
	var v store.ChainVerifier
	err = pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT sequence, body FROM audit ORDER BY sequence`)
		if err != nil {
			return err
		}
		var (
			seq int64
			raw []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&seq, &raw}, func() error {
			ev := &careplanv1.AuditEvent{}
			if err := proto.Unmarshal(raw, ev); err != nil {
				return fmt.Errorf("audit chain broken at sequence %d: event cannot be decoded: %v", seq, err)
			}
			if ev.GetSequence() != seq {
				return fmt.Errorf("audit chain broken at sequence %d: the event says it is sequence %d", seq, ev.GetSequence())
			}
			return v.NextStored(ev, raw)
		})
		if err != nil {
			return err
		}
		var head []byte
		if err := tx.QueryRow(ctx, `SELECT audit_head FROM counters`).Scan(&head); err != nil {
			return err
		}
		if !bytes.Equal(head, v.Head()) {
			return fmt.Errorf("audit chain broken after sequence %d: the recorded head does not match the last event (events were removed or the last one altered)", v.Count)
		}
		return nil
	})
	return v.Count, err
}
