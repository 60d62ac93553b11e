package client

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// AuditFilter narrows AuditEvents. A zero field does not filter.
type AuditFilter struct {
	// NhsNumber limits the events to those naming one plan.
	NhsNumber string
	// Start (inclusive) and End (exclusive) bound the event times.
	Start, End time.Time
}

// AuditEvents calls fn for each audit event the caller may see (events on
// plans related to its organisation, and events made by its own users),
// oldest first, following every page. It needs the audit:read role. It stops
// at the first error from fn and returns it unchanged.
//
// A page is fetched only when fn has taken the one before, so a slow fn
// holds no more than one page in memory. Listing a plan's events is itself
// audited, so with NhsNumber set a long listing may include its own earlier
// page requests.
func (c *Client) AuditEvents(ctx context.Context, filter AuditFilter, fn func(*careplanv1.AuditEvent) error) error {
	req := &careplanv1.ListAuditEventsRequest{
		NhsNumber: filter.NhsNumber,
		PageSize:  maxPageSize,
		StartTime: timestampOrNil(filter.Start),
		EndTime:   timestampOrNil(filter.End),
	}
	return forEachPage(func(token string) (string, error) {
		req.PageToken = token
		resp, err := c.audit.ListAuditEvents(ctx, req)
		if err != nil {
			return "", FromError(err)
		}
		for _, ev := range resp.GetAuditEvents() {
			if err := fn(ev); err != nil {
				return "", err
			}
		}
		return resp.GetNextPageToken(), nil
	})
}

// timestampOrNil leaves an unset time out of the request, so the server
// does not filter on it.
func timestampOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
