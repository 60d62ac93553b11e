package boltstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/careplan/careplan/internal/group"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// txFunc runs inside a write transaction shared with other operations. It
// must make every check before its first write, so that a domain error (see
// store.IsRefusal) leaves the transaction untouched. Any other error aborts the
// whole batch. It may run more than once, so it must set its results afresh
// on every run.
type txFunc func(tx *bolt.Tx) error

type op struct {
	ctx context.Context
	// fn is a bbolt write; nil for an op that only records audit events,
	// which may go to the journal instead.
	fn     txFunc
	events []*careplanv1.AuditEvent
	done   chan error
}

// errClosed is returned to operations queued when the store closes.
var errClosed = fmt.Errorf("%w: store is closed", store.ErrUnavailable)

// commit queues fn for the commit loop and waits until its transaction is
// durable (or has failed). Operations that wait together commit together, so
// n concurrent writers pay for about one fsync, not n.
func (s *Store) commit(ctx context.Context, fn txFunc) error {
	return s.queue(&op{ctx: ctx, fn: fn, done: make(chan error, 1)})
}

func (s *Store) queue(o *op) error {
	return group.Submit(o.ctx, s.ops, o, o.done, s.closing, errClosed)
}

func (s *Store) commitLoop() {
	defer close(s.stopped)
	batch := make([]*op, 0, s.maxBatch)
	probe := time.NewTicker(s.probeInterval)
	defer probe.Stop()
	for {
		batch = batch[:0]
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		case <-probe.C:
			// While writes fail, try a tiny write now and then, so the
			// store reports itself writable again without waiting for a
			// caller to risk a write.
			if !s.writable.Load() && s.probe() == nil {
				s.setWritable(true)
				s.retryCheckpointAt = 0 // and checkpoint with the next group
			}
			continue
		case err := <-s.ckptDone:
			s.checkpointFinished(err)
			continue
		case <-s.closing:
			return
		}
		batch = group.Fill(batch, s.ops, s.maxBatch)
		s.runBatch(batch)
	}
}

// runBatch commits batch: to the journal when it only records events, else
// in one bbolt transaction. If the transaction fails, each operation is
// retried alone so that one failing operation cannot fail the others (as
// bolt.DB.Batch does).
func (s *Store) runBatch(batch []*op) {
	if s.journal != nil && eventsOnly(batch) && s.journalBatch(batch) {
		return
	}
	// The transaction takes every journalled event, so the one a
	// background checkpoint holds must be settled first.
	s.awaitCheckpoint()
	results := make([]error, len(batch))
	s.txRev = 0
	var (
		diskTime time.Duration
		chain    chainState
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		s.txRev = 0
		// Journalled events come first: they are older than any here.
		if err := s.checkpointTx(tx); err != nil {
			return err
		}
		// After the commit, the transaction's stats hold the time spent
		// writing pages and fsyncing.
		tx.OnCommit(func() {
			stats := tx.Stats()
			diskTime = stats.GetWriteTime()
		})
		for i, o := range batch {
			// Nothing is committed for a caller whose deadline has passed.
			if err := o.ctx.Err(); err != nil {
				results[i] = err
				continue
			}
			err := o.run(tx)
			if err != nil && !store.IsRefusal(err) {
				return err
			}
			results[i] = err
		}
		chain = chainOf(tx)
		return nil
	})
	if s.observer != nil && !errors.Is(err, store.ErrInvalidRecord) {
		s.observer.ObserveCommit(len(batch), diskTime, err)
	}
	if err != nil {
		if len(batch) > 1 {
			for _, o := range batch {
				s.runBatch([]*op{o})
			}
			return
		}
		if errors.Is(err, store.ErrInvalidRecord) {
			batch[0].done <- err // the call's own data: the store is fine
			return
		}
		s.setWritable(false)
		batch[0].done <- fmt.Errorf("%w: %v", store.ErrUnavailable, err)
		return
	}
	s.checkpointed(chain)
	// A successful commit does not mark the store writable again: on a
	// nearly full disk small writes succeed while real ones fail. Only the
	// probe, a write as large as any request, does.
	if s.txRev > 0 {
		s.rev.Publish(s.txRev)
	}
	deliver(batch, results)
}

// deliver tells each operation of batch its result.
func deliver(batch []*op, results []error) {
	for i, o := range batch {
		o.done <- results[i]
	}
}

// run applies o in tx.
func (o *op) run(tx *bolt.Tx) error {
	if o.fn != nil {
		return o.fn(tx)
	}
	for _, ev := range o.events {
		if err := appendAuditTx(tx, ev, nil); err != nil {
			return err
		}
	}
	return nil
}

func eventsOnly(batch []*op) bool {
	for _, o := range batch {
		if o.fn != nil {
			return false
		}
	}
	return len(batch) > 0
}

// chainState is the end of the audit chain: the last sequence and the hash
// of that event. The commit loop owns Store.chain.
type chainState struct {
	seq  uint64
	head []byte
}

func chainOf(tx *bolt.Tx) chainState {
	return chainState{seq: tx.Bucket(bucketAudit).Sequence(), head: bytes.Clone(tx.Bucket(bucketMeta).Get(keyAuditHead))}
}

// journalBatch makes the events of batch durable in the journal as one
// group, with one write and one fdatasync. It reports false, having changed nothing, when
// they would not fit even in an empty journal; the caller then commits
// them to bbolt.
func (s *Store) journalBatch(batch []*op) bool {
	results := make([]error, len(batch))
	chain := s.chain
	buf := startGroup(s.journal.buf)
	recs := make([]journalRecord, 0, len(batch))
	for i, o := range batch {
		// Nothing is recorded for a caller whose deadline has passed.
		if err := o.ctx.Err(); err != nil {
			results[i] = err
			continue
		}
		for _, ev := range o.events {
			chain.seq++
			ev.Sequence, ev.PrevHash = int64(chain.seq), chain.head
			body, err := store.MarshalAudit(ev)
			if err != nil {
				return false // the bbolt path reports it, op by op
			}
			sum := sha256.Sum256(body)
			recs = append(recs, journalRecord{seq: chain.seq, body: body, nhs: ev.GetNhsNumber()})
			chain.head = sum[:]
			buf = appendRecord(buf, body)
		}
	}
	if len(recs) == 0 {
		deliver(batch, results)
		return true
	}
	sealGroup(buf, len(recs), recs[0].seq)
	if !s.journal.holds(len(buf)) {
		return false
	}
	s.journal.buf = buf
	var err error
	if !s.journal.fits(len(buf)) {
		err = s.checkpoint()
		if err == nil && !s.journal.fits(len(buf)) {
			err = errors.New("could not rewind the full journal")
		}
	}
	start := time.Now()
	if err == nil {
		err = s.journal.write(buf)
	}
	if s.observer != nil {
		s.observer.ObserveCommit(len(batch), time.Since(start), err)
	}
	if err != nil {
		s.setWritable(false)
		for i := range results {
			if results[i] == nil { // a caller already gone keeps its own error
				results[i] = fmt.Errorf("%w: audit journal: %v", store.ErrUnavailable, err)
			}
		}
		deliver(batch, results)
		return true
	}
	s.journal.off += int64(len(buf))
	s.pendingMu.Lock()
	s.pending = append(s.pending, recs...)
	s.pendingMu.Unlock()
	s.journaled.Store(int64(len(s.pending)))
	s.chain = chain
	deliver(batch, results)
	if s.ckptRecs == 0 && len(s.pending) >= s.checkpointEvents && len(s.pending) >= s.retryCheckpointAt {
		s.startCheckpoint()
	}
	return true
}

// checkpointTx moves the journalled events into bbolt.
func (s *Store) checkpointTx(tx *bolt.Tx) error { return putAuditTx(tx, s.pending) }

// putAuditTx writes journalled records into bbolt: the audit bucket, the
// per-plan index and the chain head.
func putAuditTx(tx *bolt.Tx, recs []journalRecord) error {
	if len(recs) == 0 {
		return nil
	}
	audit, idx := tx.Bucket(bucketAudit), tx.Bucket(bucketAuditByNHS)
	for _, r := range recs {
		if err := audit.Put(u64(r.seq), r.body); err != nil {
			return err
		}
		if err := indexAuditTx(idx, r.nhs, r.seq); err != nil {
			return err
		}
	}
	last := recs[len(recs)-1]
	if err := audit.SetSequence(last.seq); err != nil {
		return err
	}
	head := sha256.Sum256(last.body)
	return tx.Bucket(bucketMeta).Put(keyAuditHead, head[:])
}

// checkpoint moves every journalled event into bbolt now, and starts the
// journal again from its beginning.
func (s *Store) checkpoint() error {
	s.awaitCheckpoint()
	if len(s.pending) == 0 {
		return nil
	}
	var chain chainState
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := s.checkpointTx(tx); err != nil {
			return err
		}
		chain = chainOf(tx)
		return nil
	})
	if err != nil {
		return err
	}
	s.checkpointed(chain)
	return nil
}

// startCheckpoint moves the journalled events into bbolt in the background,
// so that the calls journalled meanwhile do not wait for a bbolt commit (a
// checkpoint in line held up every call behind it: the ListCarePlans p99
// was about 1 ms worse). The journal keeps its records until all of them are
// in bbolt; after a crash, replay skips those bbolt already holds.
func (s *Store) startCheckpoint() {
	// Appends to s.pending never touch these elements, and nothing else
	// changes them until checkpointFinished.
	recs := s.pending[:len(s.pending):len(s.pending)]
	s.ckptRecs = len(recs)
	go func() {
		s.ckptDone <- s.db.Update(func(tx *bolt.Tx) error { return putAuditTx(tx, recs) })
	}()
}

// awaitCheckpoint settles the background checkpoint, if one is running.
func (s *Store) awaitCheckpoint() {
	if s.ckptRecs > 0 {
		s.checkpointFinished(<-s.ckptDone)
	}
}

// checkpointFinished records the outcome of a background checkpoint.
func (s *Store) checkpointFinished(err error) {
	n := s.ckptRecs
	s.ckptRecs = 0
	if err != nil {
		// The events stay journalled, safe. Try again only once the
		// backlog has doubled: on a full disk, a failing checkpoint of a
		// growing backlog after every group cost ever more (reads slowed
		// to about 4 ms each).
		s.retryCheckpointAt = 2 * len(s.pending)
		return
	}
	s.retryCheckpointAt = 0
	s.pendingMu.Lock()
	s.pending = append(s.pending[:0], s.pending[n:]...)
	s.pendingMu.Unlock()
	s.journaled.Store(int64(len(s.pending)))
	if len(s.pending) == 0 && s.journal != nil {
		s.journal.rewind() // every record in it is in bbolt
	}
}

// checkpointed records a committed bbolt transaction, which took every
// journalled event: the journal starts again from its beginning.
func (s *Store) checkpointed(chain chainState) {
	s.chain = chain
	s.retryCheckpointAt = 0
	s.pendingMu.Lock()
	s.pending = s.pending[:0]
	s.pendingMu.Unlock()
	s.journaled.Store(0)
	if s.journal != nil {
		s.journal.rewind()
	}
}

// pendingEvents returns a copy of the journalled events, for readers when
// a checkpoint cannot be made.
func (s *Store) pendingEvents() []journalRecord {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	return slices.Clone(s.pending)
}

// flushJournal checkpoints journalled events before the audit log is read,
// so that a reader sees every event already acknowledged.
func (s *Store) flushJournal(ctx context.Context) error {
	if s.journaled.Load() == 0 {
		return nil
	}
	return s.commit(ctx, func(*bolt.Tx) error { return nil })
}

// probe commits a write as large as the largest request, then frees it: a
// tiny write can succeed on a nearly full disk that still refuses real ones.
func (s *Store) probe() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyProbe, make([]byte, s.probeBytes))
	})
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyProbe) })
}

// setWritable records whether the last write reached the disk and tells
// the health callback when that changes.
func (s *Store) setWritable(ok bool) {
	if s.writable.Swap(ok) != ok {
		s.healthMu.Lock()
		fn := s.onHealth
		s.healthMu.Unlock()
		if fn != nil {
			fn(ok)
		}
	}
}

// OnHealthChange implements store.HealthReporter.
func (s *Store) OnHealthChange(fn func(writable bool)) {
	s.healthMu.Lock()
	s.onHealth = fn
	s.healthMu.Unlock()
}
