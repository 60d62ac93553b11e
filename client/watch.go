package client

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Reconnect tuning for Watch. A restart takes a few seconds, and a watcher
// that was cut off for reading slowly should come back soon but not at once;
// a watch runs for days, so the wait is capped rather than the attempts.
const (
	watchBaseBackoff = 100 * time.Millisecond
	watchMaxBackoff  = 5 * time.Second
)

// Watch follows the change feed: it calls fn, in revision order, for each
// event after fromRevision on plans related to the caller's organisation
// (0 means from the start). It needs the careplan:read role.
//
// When the stream breaks (a server restart or lost connection, UNAVAILABLE)
// or the server cuts the watcher off for reading too slowly
// (RESOURCE_EXHAUSTED, WATCH_TOO_SLOW), Watch reconnects by itself after a
// capped, jittered backoff and resumes after the last event fn accepted, so
// fn sees every event exactly once within one call. A slow fn is therefore
// safe, though each cut-off costs a reconnect.
//
// Watch returns when ctx ends (ctx's error), when fn returns an error (that
// error, unchanged), or when the server refuses the watch for good, for
// example PERMISSION_DENIED or UNAUTHENTICATED (an *Error). lastRevision is
// where a later Watch should resume: the revision of the last event fn
// accepted, or a later one the server named as a resume point (the events in
// between were not for the caller), or fromRevision if there was none.
// Save it with each event, and after a crash at most the event in hand when
// it happened is seen again.
func (c *Client) Watch(ctx context.Context, fromRevision int64, fn func(*careplanv1.CarePlanEvent) error) (lastRevision int64, err error) {
	last := fromRevision
	for failures := 0; ; {
		from := last
		var fnErr error
		last, fnErr, err = c.watchStream(ctx, from, fn)
		switch {
		case fnErr != nil:
			return last, fnErr
		case ctx.Err() != nil:
			return last, ctx.Err()
		}
		resume, ok := resumable(err)
		if !ok {
			return last, FromError(err)
		}
		last = max(last, resume)
		if last > from {
			failures = 0 // the stream made progress: this is a fresh failure
		}
		failures++
		if err := sleep(ctx, backoff(failures, watchBaseBackoff, watchMaxBackoff)); err != nil {
			return last, err
		}
	}
}

// watchStream runs one WatchCarePlans stream from from until it ends. It
// returns the revision of the last event fn accepted (or from), and either
// fn's error or the stream's.
func (c *Client) watchStream(ctx context.Context, from int64, fn func(*careplanv1.CarePlanEvent) error) (last int64, fnErr, streamErr error) {
	last = from
	stream, err := c.plans.WatchCarePlans(ctx, &careplanv1.WatchCarePlansRequest{FromRevision: from})
	if err != nil {
		return last, nil, err
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			return last, nil, err
		}
		if ev.GetRevision() <= last {
			continue // the server promises revision > from; never hand fn a repeat
		}
		if err := ctx.Err(); err != nil {
			return last, nil, err // an event may already be buffered: do not deliver after the end
		}
		if err := fn(ev); err != nil {
			return last, err, nil
		}
		last = ev.GetRevision()
	}
}

// resumable reports whether a watch that ended with err can be resumed and
// the revision the server asked it to resume from (0 if it named none).
func resumable(err error) (from int64, ok bool) {
	if errors.Is(err, io.EOF) {
		return 0, true // the stream ended without a status; the feed never does
	}
	var e *Error
	if !errors.As(FromError(err), &e) {
		return 0, false
	}
	switch {
	case e.Code == codes.Unavailable:
		return 0, true
	case e.Code == codes.ResourceExhausted && e.Reason == "WATCH_TOO_SLOW":
		from, _ = strconv.ParseInt(e.Metadata["resume_from_revision"], 10, 64)
		return from, true
	}
	return 0, false
}
