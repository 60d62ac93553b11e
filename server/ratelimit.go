package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/careplan/careplan/auth"
)

// RateLimit bounds each caller (issuer and subject) to PerSecond calls with
// bursts of Burst. A zero PerSecond turns it off.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// callerLimits keeps one token bucket per caller. Buckets idle for longer
// than idleFor are dropped, so the map stays as small as the set of active
// callers.
type callerLimits struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	used time.Time
}

const idleFor = 10 * time.Minute

func newCallerLimits(rl RateLimit) *callerLimits {
	if rl.PerSecond <= 0 {
		return nil
	}
	if rl.Burst <= 0 {
		rl.Burst = max(1, int(rl.PerSecond))
	}
	return &callerLimits{limit: rate.Limit(rl.PerSecond), burst: rl.Burst, buckets: map[string]*bucket{}, swept: time.Now()}
}

// wait returns how long the caller must wait before this call is allowed;
// zero means allowed now (and the call is counted).
func (c *callerLimits) wait(key string, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) > idleFor {
		for k, b := range c.buckets {
			if now.Sub(b.used) > idleFor {
				delete(c.buckets, k)
			}
		}
		c.swept = now
	}
	b := c.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(c.limit, c.burst)}
		c.buckets[key] = b
	}
	b.used = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// check refuses a call over the caller's rate with RESOURCE_EXHAUSTED and a
// RetryInfo saying when to retry. go-grpc-middleware's ratelimit
// interceptor is not used because it flattens the error and drops RetryInfo.
func (c *callerLimits) check(ctx context.Context) error {
	if c == nil {
		return nil
	}
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil // health and reflection: no caller to limit
	}
	d := c.wait(p.Issuer+"\x00"+p.Subject, time.Now())
	if d == 0 {
		return nil
	}
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("rate limit of %.4g calls a second exceeded; retry after %v", float64(c.limit), d.Round(time.Millisecond)))
	return withDetails(st,
		&errdetails.ErrorInfo{Reason: "RATE_LIMITED", Domain: errorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
}

func (c *callerLimits) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (c *callerLimits) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := c.check(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}
