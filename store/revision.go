package store

import (
	"context"
	"sync"
)

// RevisionSignal is the latest committed revision and a way to wait for a
// newer one. Backends call Publish after each commit (and, with replicas,
// when they learn of another's); WaitRevision calls Wait. The zero value is
// ready to use.
type RevisionSignal struct {
	mu      sync.Mutex
	rev     int64
	changed chan struct{} // closed and replaced whenever rev grows
}

// Latest is the highest revision published.
func (r *RevisionSignal) Latest() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rev
}

// Publish records rev as committed and wakes every waiter if it is new.
func (r *RevisionSignal) Publish(rev int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rev <= r.rev {
		return
	}
	r.rev = rev
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// Wait blocks until a revision > after is published, ctx ends (its error),
// or closing is closed (closedErr).
func (r *RevisionSignal) Wait(ctx context.Context, after int64, closing <-chan struct{}, closedErr error) error {
	for {
		r.mu.Lock()
		if r.rev > after {
			r.mu.Unlock()
			return nil
		}
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-closing:
			return closedErr
		}
	}
}
