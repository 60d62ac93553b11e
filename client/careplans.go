package client

import (
	"context"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// WithAccessReason returns a context whose calls carry reason as
// x-access-reason. The server needs it for a break-glass read of a plan the
// caller's organisation is not related to, and records it in the audit log.
func WithAccessReason(ctx context.Context, reason string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "x-access-reason", reason)
}

// Get returns the current plan for the NHS number.
func (c *Client) Get(ctx context.Context, nhs string) (*careplanv1.CarePlan, error) {
	plan, err := c.plans.GetCarePlan(ctx, &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	return plan, FromError(err)
}

// Create stores a new plan and returns it as stored. requestID may be empty;
// when set, a retry with the same id returns the first result instead of
// ErrAlreadyExists, so an ambiguous failure can be retried safely.
func (c *Client) Create(ctx context.Context, plan *careplanv1.CarePlan, requestID string) (*careplanv1.CarePlan, error) {
	stored, err := c.plans.CreateCarePlan(ctx, &careplanv1.CreateCarePlanRequest{CarePlan: plan, RequestId: requestID})
	return stored, FromError(err)
}

// Update changes the plan named by plan.NhsNumber, based on the version with
// plan.Etag, and returns it as stored. paths is the update mask: nil (or
// empty) sends none, so the server applies AIP-134's implied mask (every
// field the client may set); []string{"*"} replaces the whole plan. A stale
// etag fails with ErrEtagMismatch; see Modify for the retry loop.
func (c *Client) Update(ctx context.Context, plan *careplanv1.CarePlan, paths []string, requestID string) (*careplanv1.CarePlan, error) {
	req := &careplanv1.UpdateCarePlanRequest{CarePlan: plan, RequestId: requestID}
	if len(paths) > 0 {
		req.UpdateMask = &fieldmaskpb.FieldMask{Paths: paths}
	}
	stored, err := c.plans.UpdateCarePlan(ctx, req)
	return stored, FromError(err)
}

// History returns every stored version of the plan, oldest first, following
// all pages.
func (c *Client) History(ctx context.Context, nhs string) ([]*careplanv1.CarePlan, error) {
	var versions []*careplanv1.CarePlan
	err := forEachPage(func(token string) (string, error) {
		resp, err := c.plans.ListCarePlanVersions(ctx, &careplanv1.ListCarePlanVersionsRequest{
			NhsNumber: nhs, PageSize: maxPageSize, PageToken: token,
		})
		if err != nil {
			return "", FromError(err)
		}
		versions = append(versions, resp.GetVersions()...)
		return resp.GetNextPageToken(), nil
	})
	if err != nil {
		return nil, err
	}
	return versions, nil
}
