package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// RecordAccess implements store.Store.
func (s *Store) RecordAccess(ctx context.Context, a store.Access) error {
	return s.write(ctx, func(w *writeTx) error {
		ev := &careplanv1.CarePlanEvent{
			Type:         careplanv1.CarePlanEvent_TYPE_ACCESSED_BREAK_GLASS,
			NhsNumber:    a.Plan.GetNhsNumber(),
			CarePlan:     &careplanv1.CarePlan{NhsNumber: a.Plan.GetNhsNumber(), Version: a.Plan.GetVersion()},
			Actor:        a.Actor,
			EventTime:    store.CommitTime(a.Now),
			AccessReason: a.Reason,
		}
		if err := w.appendRevision(ev); err != nil {
			return err
		}
		return w.appendAudit(a.Audit, a.Plan)
	})
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]*careplanv1.CarePlanEvent, error) {
	return s.EventsWithin(ctx, after, limit, 0)
}

// eventsSQL returns up to $2 events after revision $1 with their plan
// versions, cut where store.Budget would cut them at $3 bytes: the first
// row, then rows while the running total stays within $3. The sizes come
// from the TOAST headers, so rows past the cut are never read in full.
const eventsSQL = `
SELECT revision, body, version FROM (
	SELECT r.revision, r.body, v.body AS version,
		row_number() OVER w AS n,
		sum(octet_length(r.body) + coalesce(octet_length(v.body), 0)) OVER w AS upto
	FROM revisions r
	LEFT JOIN versions v ON v.nhs = r.nhs AND v.version = r.version
	WHERE r.revision > $1
	WINDOW w AS (ORDER BY r.revision)
	ORDER BY r.revision LIMIT $2
) e
WHERE n = 1 OR $3 <= 0 OR upto <= $3
ORDER BY revision`

// EventsWithin implements store.Store. Revisions become visible in order
// (see write), so a reader never sees revision n+1 without n.
func (s *Store) EventsWithin(ctx context.Context, after int64, limit, maxBytes int) ([]*careplanv1.CarePlanEvent, error) {
	rows, err := s.pool.Query(ctx, eventsSQL, after, limit, maxBytes)
	if err != nil {
		return nil, s.mapErr(ctx, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*careplanv1.CarePlanEvent, error) {
		var (
			rev             int64
			evBody, version []byte
		)
		if err := r.Scan(&rev, &evBody, &version); err != nil {
			return nil, err
		}
		if version == nil {
			return nil, fmt.Errorf("revision %d names a plan version that is missing", rev)
		}
		ev := &careplanv1.CarePlanEvent{}
		if err := proto.Unmarshal(evBody, ev); err != nil {
			return nil, fmt.Errorf("decode revision %d: %w", rev, err)
		}
		p, err := unmarshalPlan(version)
		if err != nil {
			return nil, err
		}
		ev.CarePlan = p
		return ev, nil
	})
	return out, s.mapErr(ctx, err)
}

// Revision implements store.Store. It asks the database, since other
// replicas commit too.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.pool.QueryRow(ctx, `SELECT revision FROM counters`).Scan(&rev); err != nil {
		return 0, s.mapErr(ctx, err)
	}
	s.rev.Publish(rev)
	return rev, nil
}

// WaitRevision implements store.Store. Commits by this replica wake it at
// once; those of others through the LISTEN connection, or the next poll.
func (s *Store) WaitRevision(ctx context.Context, after int64) error {
	return s.rev.Wait(ctx, after, s.closing, errClosed)
}
