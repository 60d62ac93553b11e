package postgres

import (
	"context"
	"time"

	"github.com/careplan/careplan/internal/group"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Every read is audited before it is answered, and each audit append is a
// transaction that holds the counters row (the chain head) until it
// commits. One transaction per read serialised all readers behind that row
// and a WAL flush each. So the events of concurrent AppendAudit calls are
// gathered, as boltstore's commit loop gathers its writes, and appended in
// one transaction: one lock, one commit, one flush.

// maxAuditBatch caps the calls that share one transaction.
const maxAuditBatch = 256

// auditBatchTimeout bounds a shared transaction. It does not follow any one
// caller's context, so a caller that gives up cannot fail the others.
const auditBatchTimeout = 10 * time.Second

// auditOp is one AppendAudit call waiting for its transaction.
type auditOp struct {
	ctx    context.Context
	events []*careplanv1.AuditEvent
	done   chan error
}

// auditLoop appends the queued calls' events until the store closes, each
// group in one transaction (see group.Fill).
func (s *Store) auditLoop() {
	defer close(s.auditStopped)
	batch := make([]*auditOp, 0, maxAuditBatch)
	for {
		batch = batch[:0]
		select {
		case o := <-s.audits:
			batch = append(batch, o)
		case <-s.closing:
			return
		}
		batch = group.Fill(batch, s.audits, maxAuditBatch)
		s.appendBatch(batch)
	}
}

// appendBatch appends the events of batch in one transaction. If it fails,
// each call is tried alone, so that one bad event cannot fail the others.
func (s *Store) appendBatch(batch []*auditOp) {
	live := make([]*auditOp, 0, len(batch))
	for _, o := range batch {
		// Nothing is recorded for a caller whose deadline has passed.
		if err := o.ctx.Err(); err != nil {
			o.done <- err
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), auditBatchTimeout)
	defer cancel()
	err := s.write(ctx, func(w *writeTx) error {
		for _, o := range live {
			for _, ev := range o.events {
				if err := w.appendAudit(ev, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil && len(live) > 1 {
		for _, o := range live {
			s.appendBatch([]*auditOp{o})
		}
		return
	}
	for _, o := range live {
		o.done <- err
	}
}
