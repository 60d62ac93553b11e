package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// maxScan bounds the index rows one list call reads, as in boltstore, so a
// selective filter over a large organisation returns a continuation rather
// than holding a query open for long.
const maxScan = 10000

// currentSQL selects a plan's current body; $1 is the NHS number.
const currentSQL = `SELECT p.etag, v.body FROM plans p
	JOIN versions v ON v.nhs = p.nhs AND v.version = p.version WHERE p.nhs = $1`

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, w store.Write) (*careplanv1.CarePlan, error) {
	return s.writePlan(ctx, w, func(tx *writeTx, p *careplanv1.CarePlan) (*careplanv1.CarePlan, error) {
		_, err := tx.current(p.GetNhsNumber())
		switch {
		case err == nil:
			return nil, store.ErrAlreadyExists
		case !errors.Is(err, store.ErrNotFound):
			return nil, err
		}
		p.Version = 1
		p.CreateTime, p.CreatedBy = p.GetUpdateTime(), p.GetUpdatedBy()
		return nil, nil
	})
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, w store.Write) (*careplanv1.CarePlan, error) {
	return s.writePlan(ctx, w, func(tx *writeTx, p *careplanv1.CarePlan) (*careplanv1.CarePlan, error) {
		cur, err := tx.current(p.GetNhsNumber())
		if err != nil {
			return nil, err
		}
		if cur.GetEtag() != w.MatchEtag {
			return nil, &store.EtagMismatchError{Current: cur.GetEtag()}
		}
		p.Version = cur.GetVersion() + 1
		p.CreateTime, p.CreatedBy = cur.GetCreateTime(), cur.GetCreatedBy()
		return cur, nil
	})
}

// writePlan commits w as a new version. After the idempotency check,
// prepare checks the write against the stored plan (returned as old; nil on
// create) and sets the version fields of p, whose update time and actor are
// set.
func (s *Store) writePlan(ctx context.Context, w store.Write, prepare func(tx *writeTx, p *careplanv1.CarePlan) (old *careplanv1.CarePlan, err error)) (*careplanv1.CarePlan, error) {
	var out *careplanv1.CarePlan
	err := s.write(ctx, func(tx *writeTx) error {
		out = nil
		if w.RequestKey != "" {
			p, ok, err := lookupRequest(tx.queryRow, w.RequestKey)
			if ok || err != nil {
				out = p
				if err != nil {
					return err
				}
				return tx.appendAudit(w.Audit, p)
			}
		}
		p, _, typ, err := store.NewVersion(w, func(p *careplanv1.CarePlan) (*careplanv1.CarePlan, error) { return prepare(tx, p) })
		if err != nil {
			return err
		}
		out = p
		return tx.putVersion(p, typ, w)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// putVersion writes p as the new current version, with its index rows,
// revision, idempotency record and audit event.
func (w *writeTx) putVersion(p *careplanv1.CarePlan, typ careplanv1.CarePlanEvent_Type, wr store.Write) error {
	body, err := marshal(p)
	if err != nil {
		return err
	}
	nhs, version := p.GetNhsNumber(), p.GetVersion()
	stmts := []stmt{
		{`INSERT INTO versions (nhs, version, body) VALUES ($1, $2, $3)`, []any{nhs, version, body}},
		{`INSERT INTO plans (nhs, version, etag) VALUES ($1, $2, $3)
			ON CONFLICT (nhs) DO UPDATE SET version = excluded.version, etag = excluded.etag`, []any{nhs, version, p.GetEtag()}},
		// The index is rewritten whole: organisations no longer related
		// lose their row, related ones get a fresh summary.
		{`DELETE FROM org_plans WHERE nhs = $1`, []any{nhs}},
		{`INSERT INTO org_plans (org, nhs, status, coordinator_id, next_review_date)
			SELECT org, $2, $3, $4, $5 FROM unnest($1::text[]) AS org`,
			[]any{policy.RelatedOrgs(p), nhs, int32(p.GetStatus()), p.GetCoordinator().GetId(), p.GetNextReviewDate()}},
	}
	if wr.RequestKey != "" {
		stmts = append(stmts, stmt{`INSERT INTO requests (key, nhs, version) VALUES ($1, $2, $3)`, []any{wr.RequestKey, nhs, version}})
	}
	for _, st := range stmts {
		w.queue(st.sql, st.args...)
	}
	ev := &careplanv1.CarePlanEvent{
		Type:      typ,
		NhsNumber: nhs,
		CarePlan:  &careplanv1.CarePlan{NhsNumber: nhs, Version: version},
		Actor:     wr.Actor,
		EventTime: p.GetUpdateTime(),
	}
	if err := w.appendRevision(ev); err != nil {
		return err
	}
	return w.appendAudit(wr.Audit, p)
}

// stmt is one statement of a write, with its arguments.
type stmt struct {
	sql  string
	args []any
}

// current reads the plan's current version inside the transaction.
func (w *writeTx) current(nhs string) (*careplanv1.CarePlan, error) {
	return scanCurrent(w.queryRow(currentSQL, nhs))
}

func scanCurrent(row pgx.Row) (*careplanv1.CarePlan, error) {
	var (
		tag  string
		body []byte
	)
	if err := row.Scan(&tag, &body); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, store.ErrNotFound
		}
		return nil, err
	}
	return unmarshalPlan(body)
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, nhs string) (*careplanv1.CarePlan, error) {
	p, err := scanCurrent(s.pool.QueryRow(ctx, currentSQL, nhs))
	return p, s.mapErr(ctx, err)
}

// GetStored implements store.Store.
func (s *Store) GetStored(ctx context.Context, nhs, org string) (*store.StoredPlan, error) {
	var (
		body    []byte
		related bool
	)
	err := s.pool.QueryRow(ctx, `SELECT v.body,
		EXISTS (SELECT 1 FROM org_plans o WHERE o.org = upper($2) AND o.nhs = p.nhs)
		FROM plans p JOIN versions v ON v.nhs = p.nhs AND v.version = p.version
		WHERE p.nhs = $1`, nhs, org).Scan(&body, &related)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, s.mapErr(ctx, err)
	}
	return store.NewStoredPlan(body, related && org != "")
}

// LookupRequest implements store.Store.
func (s *Store) LookupRequest(ctx context.Context, key string) (*careplanv1.CarePlan, bool, error) {
	p, ok, err := lookupRequest(func(sql string, args ...any) pgx.Row { return s.pool.QueryRow(ctx, sql, args...) }, key)
	return p, ok, s.mapErr(ctx, err)
}

// PruneRequests implements store.RequestPruner.
func (s *Store) PruneRequests(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM requests WHERE key IN
		(SELECT key FROM requests WHERE created < $1 ORDER BY created LIMIT $2)`, before, limit)
	if err != nil {
		return 0, s.mapErr(ctx, err)
	}
	return int(tag.RowsAffected()), nil
}

// lookupRequest reads the version a request key stored, through
// queryRow: the pool's, or a transaction's.
func lookupRequest(queryRow func(sql string, args ...any) pgx.Row, key string) (*careplanv1.CarePlan, bool, error) {
	var body []byte
	err := queryRow(`SELECT v.body FROM requests r
		JOIN versions v ON v.nhs = r.nhs AND v.version = r.version WHERE r.key = $1`, key).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	p, err := unmarshalPlan(body)
	return p, err == nil, err
}

// ListVersions implements store.Store.
func (s *Store) ListVersions(ctx context.Context, nhs string, after int64, limit int) ([]*careplanv1.CarePlan, error) {
	out, _, err := s.ListVersionsWithin(ctx, nhs, after, limit, 0)
	return out, err
}

// listVersionsSQL returns up to $3 + 1 versions after version $2 of plan
// $1, each with whether it fits store.Budget at $4 bytes. A version that
// does not fit comes without its body (the sizes come from the TOAST
// headers): it only tells that more remain.
const listVersionsSQL = `
SELECT CASE WHEN fits THEN body END, fits FROM (
	SELECT version, body, row_number() OVER w = 1 OR $4 <= 0 OR sum(octet_length(body)) OVER w <= $4 AS fits
	FROM versions WHERE nhs = $1 AND version > $2
	WINDOW w AS (ORDER BY version)
	ORDER BY version LIMIT $3 + 1
) page ORDER BY version`

// ListVersionsWithin implements store.Store.
func (s *Store) ListVersionsWithin(ctx context.Context, nhs string, after int64, limit, maxBytes int) ([]*careplanv1.CarePlan, bool, error) {
	rows, err := s.pool.Query(ctx, listVersionsSQL, nhs, after, limit, maxBytes)
	if err != nil {
		return nil, false, s.mapErr(ctx, err)
	}
	defer rows.Close()
	var (
		out  []*careplanv1.CarePlan
		more bool
	)
	for rows.Next() {
		var (
			body []byte
			fits bool
		)
		if err := rows.Scan(&body, &fits); err != nil {
			return nil, false, s.mapErr(ctx, err)
		}
		if len(out) == limit || !fits {
			more = true
			break
		}
		p, err := unmarshalPlan(body)
		if err != nil {
			return nil, false, err
		}
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, false, s.mapErr(ctx, err)
	}
	if len(out) == 0 {
		// Versions are never deleted, so only an empty page needs to ask
		// whether the plan exists at all.
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM plans WHERE nhs = $1)`, nhs).Scan(&exists); err != nil {
			return nil, false, s.mapErr(ctx, err)
		}
		if !exists {
			return nil, false, store.ErrNotFound
		}
	}
	return out, more, nil
}

// listPlansSQL reads at most maxScan index rows after the continuation
// point (scan), keeps up to limit+1 that match the filters (hits), and
// returns them with their bodies. The outer join from the scan summary
// yields one row even when nothing matched, so the caller still learns how
// far the scan went. $1 org, $2 after, $3 status (0 = any), $4 coordinator
// ("" = any), $5 review due before ("" = any), $6 limit, $7 maxScan, $8
// the byte budget (0 = none). As in store.Budget, a hit fits while the
// bodies up to it stay within $8 (the first always); one that does not
// comes without its body and ends the page.
const listPlansSQL = `
WITH scan AS (
	SELECT nhs, status, coordinator_id, next_review_date FROM org_plans
	WHERE org = $1 AND nhs > $2 ORDER BY nhs LIMIT $7
), hits AS (
	SELECT nhs FROM scan
	WHERE ($3 = 0 OR status = $3)
	  AND ($4 = '' OR coordinator_id = $4)
	  AND ($5 = '' OR (next_review_date <> '' AND next_review_date < $5))
	ORDER BY nhs LIMIT $6 + 1
)
SELECT n, last, nhs, CASE WHEN fits THEN body END, fits FROM (
	SELECT sc.n, sc.last, h.nhs, v.body,
		row_number() OVER w = 1 OR $8 <= 0 OR sum(octet_length(v.body)) OVER w <= $8 AS fits
	FROM (SELECT count(*) AS n, max(nhs) AS last FROM scan) sc
	LEFT JOIN hits h ON true
	LEFT JOIN plans p ON p.nhs = h.nhs
	LEFT JOIN versions v ON v.nhs = p.nhs AND v.version = p.version
	WINDOW w AS (ORDER BY h.nhs)
) page ORDER BY nhs`

// ListPlans implements store.Store. It is one statement, so it reads one
// snapshot.
func (s *Store) ListPlans(ctx context.Context, q store.PlanQuery) ([]*store.StoredPlan, string, error) {
	rows, err := s.pool.Query(ctx, listPlansSQL, q.Org, q.After, int32(q.Status), q.CoordinatorID, q.ReviewDueBefore, q.Limit, maxScan, q.MaxBytes)
	if err != nil {
		return nil, "", s.mapErr(ctx, err)
	}
	defer rows.Close()
	var (
		out     []*store.StoredPlan
		scanned int
		last    *string
		more    bool
	)
	for rows.Next() {
		var (
			nhs  *string
			body []byte
			fits bool
		)
		if err := rows.Scan(&scanned, &last, &nhs, &body, &fits); err != nil {
			return nil, "", s.mapErr(ctx, err)
		}
		if nhs == nil {
			continue // nothing matched
		}
		if len(out) == q.Limit || !fits {
			more = true // a further match exists: continue after this page
			break
		}
		p, err := store.NewStoredPlan(body, true)
		if err != nil {
			return nil, "", err
		}
		out = append(out, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, "", s.mapErr(ctx, err)
	}
	lastOut := q.After
	if len(out) > 0 {
		lastOut = out[len(out)-1].NhsNumber
	}
	return out, nextPage(more, lastOut, scanned, last), nil
}

func marshal(m proto.Message) ([]byte, error) {
	return proto.Marshal(m)
}

func unmarshalPlan(body []byte) (*careplanv1.CarePlan, error) {
	p := &careplanv1.CarePlan{}
	if err := proto.Unmarshal(body, p); err != nil {
		return nil, fmt.Errorf("decode plan version: %w", err)
	}
	return p, nil
}
