package client

import (
	"context"
	mathrand "math/rand/v2"
	"time"
)

// backoff returns the wait before the given retry (attempt >= 1): growth
// from base, doubling per attempt up to ceiling, with jitter over its upper
// half, so clients that failed together do not retry in lockstep. Modify and
// Watch share it with their own bounds.
func backoff(attempt int, base, ceiling time.Duration) time.Duration {
	d := ceiling
	if attempt < 16 { // beyond this the shift would pass any sane ceiling anyway
		d = min(base<<(attempt-1), ceiling)
	}
	return d/2 + mathrand.N(d/2+1)
}

// sleep waits for d or until ctx is done, returning ctx's error in that case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
