//go:build linux

package main

import (
	"context"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// phase bounds one run of the driver. Every phase stops by itself: after
// Duration, or after MaxOps operations if that comes first, or when ctx ends.
type phase struct {
	Name     string
	Callers  int
	Duration time.Duration
	// MaxOps, when > 0, stops the phase after that many operations (a load
	// or a verification pass over a known set).
	MaxOps int64
}

// opFunc is one operation. caller is 0..Callers-1, so an operation can keep
// per-caller state without locks; i numbers the operations of one drive
// across callers (0, 1, 2, …), so that with MaxOps it indexes a fixed set
// of work (the plans to load or to verify).
type opFunc func(ctx context.Context, caller int, i int64) error

// result is what one phase measured.
type result struct {
	Name     string
	Callers  int
	Ops      int64 // successful operations; only these are in Latency
	Errors   int64
	FirstErr error
	Elapsed  time.Duration
	Latency  *histogram
	// CPU is the server process's CPU time over the phase, when HasCPU.
	CPU    time.Duration
	HasCPU bool
	// ClientCPU is the bench process's own CPU time over the phase (the
	// clients; with -cpuprofile also the server).
	ClientCPU time.Duration
	// Idle and Ticks are the machine's idle and total CPU ticks over the
	// phase: a phase with idle CPU is bound by waiting, not by the CPU.
	Idle, Ticks int64
	// Store holds the careplan store's counters over the phase.
	Store storeCounters
}

// IdleShare is the share of the machine's CPU time left idle in the phase.
func (r *result) IdleShare() float64 {
	if r.Ticks == 0 {
		return 0
	}
	return float64(r.Idle) / float64(r.Ticks)
}

// CPUPerOp is the server's CPU time per successful operation, or 0.
func (r *result) CPUPerOp() time.Duration {
	if !r.HasCPU || r.Ops == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Ops)
}

// PerSec is successful operations per second of wall time.
func (r *result) PerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// add folds another slice of the same phase into r.
func (r *result) add(o *result) {
	r.Ops += o.Ops
	r.Errors += o.Errors
	if r.FirstErr == nil {
		r.FirstErr = o.FirstErr
	}
	r.Elapsed += o.Elapsed
	r.Latency.merge(o.Latency)
	r.CPU += o.CPU
	r.HasCPU = o.HasCPU
	r.ClientCPU += o.ClientCPU
	r.Idle += o.Idle
	r.Ticks += o.Ticks
	r.Store.add(o.Store)
}

// drive runs op from p.Callers goroutines until the phase's bounds are hit.
// It is the one load loop of the harness: loading, baselines, careplan reads
// and writes, and verification all go through it, so they are measured the
// same way.
func drive(ctx context.Context, p phase, op opFunc) *result {
	if p.Callers < 1 {
		p.Callers = 1
	}
	deadline := time.Now().Add(p.Duration)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// over is checked against the clock as well as ctx: grpc fails a call
	// whose deadline has passed at once, before ctx's own timer has fired,
	// and a caller would spin through such failures until it did.
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(deadline) }
	var (
		next   atomic.Int64
		errs   atomic.Int64
		errMu  sync.Mutex
		first  error
		wg     sync.WaitGroup
		hists  = make([]*histogram, p.Callers)
		counts = make([]int64, p.Callers)
	)
	start := time.Now()
	for c := range p.Callers {
		hists[c] = newHistogram()
		wg.Go(func() {
			h := hists[c]
			for !over() {
				i := next.Add(1) - 1
				if p.MaxOps > 0 && i >= p.MaxOps {
					return
				}
				t0 := time.Now()
				err := op(ctx, c, i)
				d := time.Since(t0)
				if err != nil {
					// An operation cut short by the end of the phase is
					// neither a success nor a failure.
					if over() {
						return
					}
					if errs.Add(1) == 1 {
						errMu.Lock()
						first = err
						errMu.Unlock()
					}
					continue
				}
				h.record(d)
				counts[c]++
			}
		})
	}
	wg.Wait()
	r := &result{Name: p.Name, Callers: p.Callers, Elapsed: time.Since(start), Errors: errs.Load(), FirstErr: first, Latency: newHistogram()}
	for c := range p.Callers {
		r.Ops += counts[c]
		r.Latency.merge(hists[c])
	}
	return r
}

// histogram records durations in log-linear buckets: values below 128 ns
// exactly, above that 64 buckets per power of two, so any percentile is
// within 1/64 (1.6%) of the true value while memory stays fixed however
// long a phase runs. Callers record into their own histogram (no locks) and
// the driver merges them.
type histogram struct {
	counts   []int64
	n        int64
	min, max time.Duration
}

const (
	subBits    = 6 // 64 buckets per power of two
	subBuckets = 1 << subBits
	// exact values are kept below 2*subBuckets ns.
	exactBelow = 2 * subBuckets
	maxShift   = 63 - subBits
)

func newHistogram() *histogram {
	return &histogram{counts: make([]int64, exactBelow+maxShift*subBuckets), min: math.MaxInt64}
}

// bucketOf maps a value to its bucket index.
func bucketOf(v uint64) int {
	if v < exactBelow {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1 // keep the top subBits+1 bits
	top := v >> shift                    // in [subBuckets, 2*subBuckets)
	return exactBelow + (shift-1)*subBuckets + int(top-subBuckets)
}

// bucketMid is the middle of bucket i's value range.
func bucketMid(i int) uint64 {
	if i < exactBelow {
		return uint64(i)
	}
	i -= exactBelow
	shift := i/subBuckets + 1
	lo := uint64(i%subBuckets+subBuckets) << shift
	return lo + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	h.min = min(h.min, d)
	h.max = max(h.max, d)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *histogram) Count() int64 { return h.n }

// Max is the largest recorded value (0 when empty).
func (h *histogram) Max() time.Duration {
	if h.n == 0 {
		return 0
	}
	return h.max
}

// Percentile returns the value at or below which a fraction q (0..1] of the
// recorded values lie, by the nearest-rank method; 0 when nothing was
// recorded. The result is clamped to the recorded min and max, so p100 is
// exact and a single value is returned as itself.
func (h *histogram) Percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = max(1, min(rank, h.n))
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return max(h.min, min(h.max, time.Duration(bucketMid(i))))
		}
	}
	return h.max
}
