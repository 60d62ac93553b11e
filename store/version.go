package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Helpers every backend shares, so that plans written by one backend look
// the same as plans written by another.

// Etag is opaque to clients: the version plus a hash of what makes this
// version unique, so a restored or diverged copy cannot reuse an etag.
func Etag(p *careplanv1.CarePlan) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s/%d/%d/%s", p.GetNhsNumber(), p.GetVersion(), p.GetUpdateTime().AsTime().UnixNano(), p.GetUpdatedBy().GetSubject())
	return fmt.Sprintf("%d-%x", p.GetVersion(), h.Sum(nil)[:6])
}

// CommitTime is the time recorded for a write: t, or now when t is zero.
func CommitTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		t = time.Now()
	}
	return timestamppb.New(t)
}

// IsRefusal reports whether err is an expected outcome of an operation (a
// refused write, or the caller going away) rather than a storage failure.
func IsRefusal(err error) bool {
	return errors.Is(err, ErrNotFound) ||
		errors.Is(err, ErrAlreadyExists) ||
		errors.Is(err, ErrEtagMismatch) ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, context.DeadlineExceeded)
}
