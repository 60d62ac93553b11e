package server

import (
	"context"
	"fmt"
	"strconv"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/validate"
)

// auditService implements careplan.v1.AuditService for information
// governance staff: events about plans related to the caller's organisation
// and events made by its own users.
type auditService struct {
	careplanv1.UnimplementedAuditServiceServer
	store  store.Store
	limits validate.Limits
}

func (s *auditService) ListAuditEvents(ctx context.Context, req *careplanv1.ListAuditEventsRequest) (*careplanv1.ListAuditEventsResponse, error) {
	p := principal(ctx)
	if !p.HasRole(auth.RoleAuditRead) {
		return nil, toStatus(policy.MissingRole(auth.RoleAuditRead))
	}
	q := store.AuditQuery{
		NhsNumber: req.GetNhsNumber(),
		Org:       p.Org,
		Limit:     pageSize(req.GetPageSize(), s.limits.MaxPageSize),
	}
	if req.GetStartTime() != nil {
		q.Start = req.GetStartTime().AsTime()
	}
	if req.GetEndTime() != nil {
		q.End = req.GetEndTime().AsTime()
	}
	filter := fmt.Sprintf("%s|%d|%d", q.NhsNumber, q.Start.UnixNano(), q.End.UnixNano())
	after, err := decodePageToken(req.GetPageToken(), filter)
	if err != nil {
		return nil, toStatus(err)
	}
	if after != "" {
		if q.AfterSequence, err = strconv.ParseInt(after, 10, 64); err != nil {
			return nil, toStatus(invalid(validate.FieldViolation{Field: "page_token", Description: "invalid page token"}))
		}
	}
	events, next, err := s.store.ListAudit(ctx, q)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &careplanv1.ListAuditEventsResponse{AuditEvents: events}
	if next != 0 {
		resp.NextPageToken = encodePageToken(strconv.FormatInt(next, 10), filter)
	}
	return resp, nil
}
