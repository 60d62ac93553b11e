package boltstore

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/careplan/careplan/store"
)

// txFunc runs inside a write transaction shared with other operations. It
// must make every check before its first write, so that a domain error (see
// store.IsRefusal) leaves the transaction untouched. Any other error aborts the
// whole batch. It may run more than once, so it must set its results afresh
// on every run.
type txFunc func(tx *bolt.Tx) error

type op struct {
	ctx  context.Context
	fn   txFunc
	done chan error
}

// errClosed is returned to operations queued when the store closes.
var errClosed = fmt.Errorf("%w: store is closed", store.ErrUnavailable)

// commit queues fn for the commit loop and waits until its transaction is
// durable (or has failed). Operations that wait together commit together, so
// n concurrent writers pay for about one fsync, not n.
func (s *Store) commit(ctx context.Context, fn txFunc) error {
	o := &op{ctx: ctx, fn: fn, done: make(chan error, 1)}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return errClosed
	}
	// Once queued, wait for the outcome even if ctx ends: the loop skips an
	// operation whose context has ended before it runs, but one already in a
	// committing transaction must report what happened.
	return <-o.done
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
			if !s.writable.Load() {
				s.setWritable(s.probe() == nil)
			}
			continue
		case <-s.closing:
			return
		}
		// Take everyone already waiting; never wait for more, so a lone
		// writer pays no added latency.
	fill:
		for len(batch) < s.maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.runBatch(batch)
	}
}

// runBatch commits batch in one transaction. If the transaction fails, each
// operation is retried alone so that one failing operation cannot fail the
// others (as bolt.DB.Batch does).
func (s *Store) runBatch(batch []*op) {
	results := make([]error, len(batch))
	s.txRev = 0
	var diskTime time.Duration
	err := s.db.Update(func(tx *bolt.Tx) error {
		s.txRev = 0
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
			err := o.fn(tx)
			if err != nil && !store.IsRefusal(err) {
				return err
			}
			results[i] = err
		}
		return nil
	})
	if s.observer != nil {
		s.observer.ObserveCommit(len(batch), diskTime, err)
	}
	if err != nil {
		if len(batch) > 1 {
			for _, o := range batch {
				s.runBatch([]*op{o})
			}
			return
		}
		s.setWritable(false)
		batch[0].done <- fmt.Errorf("%w: %v", store.ErrUnavailable, err)
		return
	}
	// A successful commit does not mark the store writable again: on a
	// nearly full disk small writes succeed while real ones fail. Only the
	// probe, a write as large as any request, does.
	if s.txRev > 0 {
		s.rev.Publish(s.txRev)
	}
	for i, o := range batch {
		o.done <- results[i]
	}
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
