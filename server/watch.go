package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// WatchOptions bound what one slow watcher may cost.
type WatchOptions struct {
	// ReadBatch is how many log entries one store read returns at most.
	// Default 256.
	ReadBatch int
	// MaxBatchBytes bounds one store read in bytes as stored (plan
	// versions and log entries; always at least one event), and so what
	// one watcher holds besides the event being sent. Default 1 MiB.
	MaxBatchBytes int
	// SendTimeout: a watcher that has not accepted an event within this
	// long (its stream's flow-control window stayed full: it stopped
	// reading) is cut off, even while its client stays connected. Default
	// 10s.
	SendTimeout time.Duration
}

func (o WatchOptions) withDefaults() WatchOptions {
	if o.ReadBatch <= 0 {
		o.ReadBatch = 256
	}
	if o.MaxBatchBytes <= 0 {
		o.MaxBatchBytes = 1 << 20
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 10 * time.Second
	}
	return o
}

// WatchCarePlans streams the revision log after req.from_revision, filtered
// to plans the caller's organisation may read now. Each watcher reads the
// store's log at its own pace, one batch bounded in events and bytes at a
// time, so writers never wait for watchers and a slow watcher holds no more
// than one batch. A watcher catching up from an old revision is not slow;
// one that stops reading is cut off with RESOURCE_EXHAUSTED naming the
// revision to resume from, so it cannot pin a batch and a goroutine for ever.
func (s *carePlanService) WatchCarePlans(req *careplanv1.WatchCarePlansRequest, stream grpc.ServerStreamingServer[careplanv1.CarePlanEvent]) error {
	ctx := stream.Context()
	p := principal(ctx)
	if !p.HasRole(auth.RoleRead) {
		return toStatus(policy.MissingRole(auth.RoleRead))
	}
	opts := s.watch.withDefaults()
	out := newWatchSender(stream)
	defer out.close()
	delivered := req.GetFromRevision() // everything up to here was queued for the client or is not the caller's
	for {
		events, err := s.store.EventsWithin(ctx, delivered, opts.ReadBatch, opts.MaxBatchBytes)
		if err != nil {
			return watchEnd(ctx, err)
		}
		if len(events) == 0 {
			if err := s.store.WaitRevision(ctx, delivered); err != nil {
				return watchEnd(ctx, err)
			}
			continue
		}
		current := currentFacts{store: s.store, org: p.Org}
		for _, ev := range events {
			ok, err := policy.InFeed(ev.GetCarePlan(), p.Org, func() (policy.ReadFacts, error) {
				return current.get(ctx, ev.GetNhsNumber())
			})
			if err != nil {
				return watchEnd(ctx, err)
			}
			if ok {
				if err := out.send(ctx, ev, opts.SendTimeout); errors.Is(err, errWatchTooSlow) {
					return tooSlow(delivered)
				} else if err != nil {
					return err
				}
			}
			delivered = ev.GetRevision()
		}
	}
}

// factsMaxAge bounds how long a watcher trusts a read of a current plan.
const factsMaxAge = time.Second

// currentFacts reads the facts of current plans for org, once per plan for
// one batch and for at most factsMaxAge, so the feed stays cheap and an
// organisation removed from a plan stops getting it within a second, even on
// a watcher that reads slowly through its batch.
type currentFacts struct {
	store  store.Store
	org    string
	cache  map[string]policy.ReadFacts
	readAt time.Time
}

func (c *currentFacts) get(ctx context.Context, nhs string) (policy.ReadFacts, error) {
	if c.cache == nil || time.Since(c.readAt) > factsMaxAge {
		c.cache, c.readAt = map[string]policy.ReadFacts{}, time.Now()
	}
	if f, ok := c.cache[nhs]; ok {
		return f, nil
	}
	sp, err := c.store.GetStored(ctx, nhs, c.org)
	if err != nil {
		return policy.ReadFacts{}, err
	}
	c.cache[nhs] = sp.Facts
	return sp.Facts, nil
}

// errWatchTooSlow: a Send did not return within the send timeout.
var errWatchTooSlow = errors.New("watcher did not accept an event within the send timeout")

// watchSender runs a watcher's Sends in a goroutine of its own, so that the
// handler can give up on a Send blocked on flow control (the pattern of
// etcd's v3rpc/watch.go): returning from the handler ends the stream, grpc
// cancels its context, and the blocked Send returns.
type watchSender struct {
	events chan *careplanv1.CarePlanEvent
	// sent has one result per event; its room lets a Send the handler gave
	// up on report and the goroutine exit.
	sent chan error
}

func newWatchSender(stream grpc.ServerStreamingServer[careplanv1.CarePlanEvent]) *watchSender {
	w := &watchSender{events: make(chan *careplanv1.CarePlanEvent), sent: make(chan error, 1)}
	go func() {
		for ev := range w.events {
			w.sent <- stream.Send(ev)
		}
	}()
	return w
}

// send hands ev to the stream and waits until Send returns, for at most
// timeout. grpc queues a message for the wire only once its stream has
// flow-control quota, just before Send returns, and the stream's status is
// queued behind it. So when send returns nil, ev reaches the client before
// any status; when it returns errWatchTooSlow, Send had not returned and ev
// is not queued (if it were queued as the handler gives up, the client sees
// it twice, never a gap): the handler must end the stream, and a resume
// delivers ev again.
func (w *watchSender) send(ctx context.Context, ev *careplanv1.CarePlanEvent, timeout time.Duration) error {
	w.events <- ev // the goroutine is idle: each send waits for the one before
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-w.sent:
		return err
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-t.C:
	}
	select {
	case err := <-w.sent: // Send returned as the timer fired
		return err
	default:
		return errWatchTooSlow
	}
}

// close ends the goroutine once its Send, if any, has returned.
func (w *watchSender) close() { close(w.events) }

// watchEnd maps the end of a watch: a client that left gets its context's
// status, anything else goes through the error table.
func watchEnd(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return toStatus(err)
}

func tooSlow(resumeFrom int64) error {
	st := status.New(codes.ResourceExhausted,
		fmt.Sprintf("watcher fell behind: reconnect with from_revision=%d", resumeFrom))
	return withDetails(st, &errdetails.ErrorInfo{
		Reason: "WATCH_TOO_SLOW", Domain: errorDomain,
		Metadata: map[string]string{"resume_from_revision": fmt.Sprint(resumeFrom)},
	})
}
