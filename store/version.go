package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
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

// NewVersion builds the version a write stores: a copy of w.Plan stamped
// with the commit time and actor, then prepare (which checks the write
// against the stored plan, returns it as old — nil on create — and sets the
// version fields), then the etag. typ says whether it creates or updates.
func NewVersion(w Write, prepare func(p *careplanv1.CarePlan) (old *careplanv1.CarePlan, err error)) (p, old *careplanv1.CarePlan, typ careplanv1.CarePlanEvent_Type, err error) {
	p = proto.Clone(w.Plan).(*careplanv1.CarePlan)
	p.UpdateTime, p.UpdatedBy = CommitTime(w.Now), w.Actor
	if old, err = prepare(p); err != nil {
		return nil, nil, 0, err
	}
	p.Etag = Etag(p)
	typ = careplanv1.CarePlanEvent_TYPE_UPDATED
	if old == nil {
		typ = careplanv1.CarePlanEvent_TYPE_CREATED
	}
	return p, old, typ, nil
}
