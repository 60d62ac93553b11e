package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// WatchOptions bound what one slow watcher may cost.
type WatchOptions struct {
	// ReadBatch is how many log entries one store read returns, and so the
	// most events held for one watcher. Default 256.
	ReadBatch int
	// SendTimeout: a watcher that took longer than this to accept one
	// event (its stream's flow-control window stayed full: it stopped
	// reading) is cut off. Default 10s.
	SendTimeout time.Duration
}

func (o WatchOptions) withDefaults() WatchOptions {
	if o.ReadBatch <= 0 {
		o.ReadBatch = 256
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 10 * time.Second
	}
	return o
}

// WatchCarePlans streams the revision log after req.from_revision, filtered
// to plans related to the caller's organisation. Each watcher reads the
// store's log at its own pace, one bounded batch at a time, so writers
// never wait for watchers and a slow watcher holds no more than one batch.
// A watcher catching up from an old revision is not slow; one that stops
// reading is cut off with RESOURCE_EXHAUSTED naming the revision to resume
// from, so it cannot pin a batch and a goroutine for ever.
func (s *carePlanService) WatchCarePlans(req *careplanv1.WatchCarePlansRequest, stream grpc.ServerStreamingServer[careplanv1.CarePlanEvent]) error {
	ctx := stream.Context()
	p := principal(ctx)
	if !p.HasRole(auth.RoleRead) {
		return toStatus(policy.MissingRole(auth.RoleRead))
	}
	opts := s.watch.withDefaults()
	delivered := req.GetFromRevision() // everything up to here was sent or is not the caller's
	for {
		events, err := s.store.Events(ctx, delivered, opts.ReadBatch)
		if err != nil {
			return watchEnd(ctx, err)
		}
		if len(events) == 0 {
			if err := s.store.WaitRevision(ctx, delivered); err != nil {
				return watchEnd(ctx, err)
			}
			continue
		}
		for _, ev := range events {
			if !policy.Related(ev.GetCarePlan(), p.Org) {
				delivered = ev.GetRevision()
				continue
			}
			start := time.Now()
			if err := stream.Send(ev); err != nil {
				return err
			}
			delivered = ev.GetRevision()
			if time.Since(start) > opts.SendTimeout {
				return tooSlow(delivered)
			}
		}
	}
}

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
