package boltstore

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// appendRevisionTx gives ev the next store-wide revision and logs it. The
// logged event names the plan version only; Events hydrates it.
func (s *Store) appendRevisionTx(tx *bolt.Tx, ev *careplanv1.CarePlanEvent) error {
	b := tx.Bucket(bucketRevisions)
	rev, err := b.NextSequence()
	if err != nil {
		return err
	}
	ev.Revision = int64(rev)
	body, err := proto.Marshal(ev)
	if err != nil {
		return err
	}
	if err := b.Put(u64(rev), body); err != nil {
		return err
	}
	s.txRev = ev.Revision
	return nil
}

// RecordAccess implements store.Store.
func (s *Store) RecordAccess(ctx context.Context, a store.Access) error {
	return s.commit(ctx, func(tx *bolt.Tx) error {
		ev := &careplanv1.CarePlanEvent{
			Type:         careplanv1.CarePlanEvent_TYPE_ACCESSED_BREAK_GLASS,
			NhsNumber:    a.Plan.GetNhsNumber(),
			CarePlan:     &careplanv1.CarePlan{NhsNumber: a.Plan.GetNhsNumber(), Version: a.Plan.GetVersion()},
			Actor:        a.Actor,
			EventTime:    store.CommitTime(a.Now),
			AccessReason: a.Reason,
		}
		if err := s.appendRevisionTx(tx, ev); err != nil {
			return err
		}
		return appendAuditTx(tx, a.Audit, a.Plan)
	})
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]*careplanv1.CarePlanEvent, error) {
	return s.EventsWithin(ctx, after, limit, 0)
}

// EventsWithin implements store.Store.
func (s *Store) EventsWithin(_ context.Context, after int64, limit, maxBytes int) ([]*careplanv1.CarePlanEvent, error) {
	var out []*careplanv1.CarePlanEvent
	err := s.view(func(tx *bolt.Tx) error {
		out = nil
		budget := store.Budget{Max: maxBytes}
		c := tx.Bucket(bucketRevisions).Cursor()
		for k, v := c.Seek(u64(uint64(after) + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			ev := &careplanv1.CarePlanEvent{}
			if err := proto.Unmarshal(v, ev); err != nil {
				return fmt.Errorf("decode revision: %w", err)
			}
			body, err := versionBodyTx(tx, ev.GetNhsNumber(), ev.GetCarePlan().GetVersion())
			if err != nil {
				return err
			}
			if !budget.Fits(len(v) + len(body)) {
				return nil
			}
			if ev.CarePlan, err = decodePlan(body, nil); err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

// Revision implements store.Store.
func (s *Store) Revision(context.Context) (int64, error) {
	return s.rev.Latest(), nil
}

// WaitRevision implements store.Store.
func (s *Store) WaitRevision(ctx context.Context, after int64) error {
	return s.rev.Wait(ctx, after, s.closing, errClosed)
}
