package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Retry tuning for Modify. Writers that collide on one plan are few (a trust
// and a council), so a short, capped backoff is enough to let one win.
const (
	defaultMaxAttempts = 10
	modifyBaseBackoff  = 10 * time.Millisecond
	modifyMaxBackoff   = 500 * time.Millisecond
)

// replaceAll is the update mask that makes the server take the plan exactly
// as fn left it, including fields fn cleared.
var replaceAll = []string{"*"}

// ModifyOption configures Modify.
type ModifyOption func(*modifyOptions)

type modifyOptions struct {
	maxAttempts int
}

// MaxAttempts bounds the number of read-modify-write attempts (default 10).
// Values below 1 mean 1.
func MaxAttempts(n int) ModifyOption {
	return func(o *modifyOptions) { o.maxAttempts = max(n, 1) }
}

// Modify is the read-modify-write loop for a plan. It reads the plan, lets fn
// change it in place, and writes it back with update mask "*" and the etag it
// read. If another writer changed the plan in between (ErrEtagMismatch) it
// waits a short jittered backoff, re-reads, and calls fn again on the fresh
// plan, up to MaxAttempts times; fn must therefore be safe to call more than
// once. It returns the plan as stored.
//
// fn may not change the plan's identity or version: nhs_number and etag are
// reset to the values read. If fn returns an error, Modify stops and returns
// it unchanged. Any other failure is returned at once.
//
// Each attempt sends a fresh request_id, since each is a different write
// (based on a different etag). So when an attempt fails ambiguously (say
// ErrUnavailable after the write may have landed), calling Modify again is
// safe: it re-reads and fn sees whether the change is already there.
func (c *Client) Modify(ctx context.Context, nhs string, fn func(*careplanv1.CarePlan) error, opts ...ModifyOption) (*careplanv1.CarePlan, error) {
	o := modifyOptions{maxAttempts: defaultMaxAttempts}
	for _, opt := range opts {
		opt(&o)
	}
	var err error
	for attempt := range o.maxAttempts {
		if attempt > 0 {
			if err := sleep(ctx, backoff(attempt, modifyBaseBackoff, modifyMaxBackoff)); err != nil {
				return nil, err
			}
		}
		var (
			stored *careplanv1.CarePlan
			stale  bool
		)
		stored, stale, err = c.modifyOnce(ctx, nhs, fn)
		if !stale {
			return stored, err
		}
	}
	return nil, fmt.Errorf("client: modify gave up after %d attempts: %w", o.maxAttempts, err)
}

// modifyOnce is one read-modify-write attempt. stale reports that the write
// lost a race and is worth retrying; an error from fn never is, even one that
// wraps an *Error, because fn decided to stop.
func (c *Client) modifyOnce(ctx context.Context, nhs string, fn func(*careplanv1.CarePlan) error) (stored *careplanv1.CarePlan, stale bool, err error) {
	plan, err := c.Get(ctx, nhs)
	if err != nil {
		return nil, false, err
	}
	id, etag := plan.GetNhsNumber(), plan.GetEtag()
	if err := fn(plan); err != nil {
		return nil, false, err
	}
	plan.NhsNumber, plan.Etag = id, etag
	stored, err = c.Update(ctx, plan, replaceAll, newRequestID())
	return stored, errors.Is(err, ErrEtagMismatch), err
}

// newRequestID returns a random version 4 UUID string.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
