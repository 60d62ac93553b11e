//go:build linux

package main

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	// 1..1000 µs: the nearest-rank p50 is 500 µs, p99 990 µs, p100 1000 µs.
	h := newHistogram()
	for i := 1000; i >= 1; i-- { // reverse order: recording must not depend on it
		h.record(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		name string
		q    float64
		want time.Duration
	}{
		{"p0 is the minimum", 0, time.Microsecond},
		{"p50", 0.50, 500 * time.Microsecond},
		{"p99", 0.99, 990 * time.Microsecond},
		{"p100 is the exact maximum", 1, 1000 * time.Microsecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := h.Percentile(tc.q)
			// Buckets are 1/64 of a power of two wide.
			if diff := got - tc.want; diff < -tc.want/64 || diff > tc.want/64 {
				t.Errorf("Percentile(%v) = %v, want %v ± 1/64", tc.q, got, tc.want)
			}
		})
	}
}

func TestPercentileEdges(t *testing.T) {
	if got := newHistogram().Percentile(0.99); got != 0 {
		t.Errorf("empty histogram p99 = %v, want 0", got)
	}
	one := newHistogram()
	one.record(1234567 * time.Nanosecond)
	for _, q := range []float64{0.01, 0.5, 0.99, 1} {
		if got := one.Percentile(q); got != 1234567*time.Nanosecond {
			t.Errorf("single value: Percentile(%v) = %v, want the value itself", q, got)
		}
	}
	small := newHistogram()
	for _, ns := range []time.Duration{5, 7, 100} { // below 128 ns values are exact
		small.record(ns)
	}
	if got := small.Percentile(0.5); got != 7 {
		t.Errorf("exact range p50 = %v, want 7ns", got)
	}
}

func TestMergeAndBucketsCoverEveryValue(t *testing.T) {
	a, b := newHistogram(), newHistogram()
	a.record(time.Millisecond)
	b.record(time.Hour)
	a.merge(b)
	if a.Count() != 2 || a.Max() != time.Hour || a.Percentile(0.5) > time.Millisecond+time.Millisecond/64 {
		t.Errorf("after merge: count %d, max %v, p50 %v", a.Count(), a.Max(), a.Percentile(0.5))
	}
	for _, v := range []uint64{0, 127, 128, 255, 256, 1 << 40, 1<<63 - 1} {
		i := bucketOf(v)
		if i < 0 || i >= len(a.counts) {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, i, len(a.counts))
		}
		if mid := bucketMid(i); v >= exactBelow && (mid < v-v/64 || mid > v+v/64) {
			t.Errorf("bucketMid(bucketOf(%d)) = %d, more than 1/64 away", v, mid)
		}
	}
}

func TestDriveStopsAtMaxOpsAndCountsErrors(t *testing.T) {
	failOdd := func(_ context.Context, _ int, i int64) error {
		if i%2 == 1 {
			return errors.New("odd")
		}
		return nil
	}
	r := drive(context.Background(), phase{Name: "t", Callers: 4, Duration: time.Minute, MaxOps: 100}, failOdd)
	if r.Ops != 50 || r.Errors != 50 || r.Latency.Count() != 50 || r.FirstErr == nil {
		t.Errorf("ops %d, errors %d, recorded %d, first error %v; want 50, 50, 50, non-nil", r.Ops, r.Errors, r.Latency.Count(), r.FirstErr)
	}
}
