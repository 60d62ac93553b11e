package main

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/fixture"
)

// readers is how many callers read plans while the writers write: every
// answered read has a durable audit event (in the audit journal until a
// checkpoint), which a kill must not lose either.
const readers = 4

// readPlans reads the writers' plans in turn until ctx ends, and returns
// how many reads were answered. A plan not yet created is answered too
// (NOT_FOUND), and audited the same way.
func readPlans(ctx context.Context, cl *client.Client, id, plans int) (answered int) {
	for i := id; ctx.Err() == nil; i += readers {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := cl.Get(cctx, fixture.NHSNumber(i%plans))
		cancel()
		switch status.Code(err) {
		case codes.OK, codes.NotFound:
			answered++
		default:
			// Throttled (rate-limited calls are not audited), or the
			// server is going down.
			time.Sleep(throttlePause)
		}
	}
	return answered
}
