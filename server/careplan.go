package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/validate"
)

// carePlanService implements careplan.v1.CarePlanService. Requests reach it
// authenticated and validated; the policy decides, the store writes, and
// toStatus maps every error.
type carePlanService struct {
	careplanv1.UnimplementedCarePlanServiceServer
	store  store.Store
	limits validate.Limits
	watch  WatchOptions
	// pageBytes bounds the stored bytes of the plans in one list page.
	pageBytes int
}

func (s *carePlanService) CreateCarePlan(ctx context.Context, req *careplanv1.CreateCarePlanRequest) (*careplanv1.CarePlan, error) {
	p := principal(ctx)
	key := requestKey(p, "create", req.GetRequestId())
	if done, ok, err := s.replay(ctx, key); ok || err != nil {
		return done, toStatus(err)
	}
	plan := clientFields(req.GetCarePlan())
	assignIDs(plan)
	if err := policy.CheckWrite(p, nil, plan); err != nil {
		return nil, toStatus(err)
	}
	rec := auditFrom(ctx)
	out, err := s.store.Create(ctx, store.Write{Plan: plan, Actor: p.Actor(), RequestKey: key, Audit: rec.ev})
	if err != nil {
		return nil, toStatus(err)
	}
	rec.done = true
	return out, nil
}

func (s *carePlanService) GetCarePlan(ctx context.Context, req *careplanv1.GetCarePlanRequest) (*careplanv1.CarePlan, error) {
	sp, err := s.readable(ctx, req.GetNhsNumber())
	if err != nil {
		return nil, toStatus(err)
	}
	return encodedPlan(sp.Body), nil
}

// encodedPlan returns a CarePlan that marshals to exactly body. Protobuf
// keeps bytes it does not recognise and writes them back verbatim, so the
// stored encoding reaches the client without a decode and a re-encode.
// Only the wire sees the fields: nothing in this process may read them.
func encodedPlan(body []byte) *careplanv1.CarePlan {
	p := &careplanv1.CarePlan{}
	p.ProtoReflect().SetUnknown(body)
	return p
}

func (s *carePlanService) UpdateCarePlan(ctx context.Context, req *careplanv1.UpdateCarePlanRequest) (*careplanv1.CarePlan, error) {
	p := principal(ctx)
	key := requestKey(p, "update", req.GetRequestId())
	if done, ok, err := s.replay(ctx, key); ok || err != nil {
		return done, toStatus(err)
	}
	cur, err := s.store.Get(ctx, req.GetCarePlan().GetNhsNumber())
	if err != nil {
		return nil, toStatus(err)
	}
	// An organisation with no part in the plan learns nothing of it, not
	// even whether its etag is current.
	if err := policy.CheckWrite(p, cur, cur); err != nil {
		return nil, toStatus(err)
	}
	if req.GetCarePlan().GetEtag() != cur.GetEtag() {
		return nil, toStatus(&store.EtagMismatchError{Current: cur.GetEtag()})
	}
	next := applyMask(cur, req.GetCarePlan(), req.GetUpdateMask().GetPaths())
	if vs := s.limits.CarePlan(next, "care_plan"); len(vs) > 0 {
		return nil, toStatus(invalid(vs...))
	}
	assignIDs(next)
	if err := policy.CheckWrite(p, cur, next); err != nil {
		return nil, toStatus(err)
	}
	rec := auditFrom(ctx)
	rec.ev.PlanVersion = cur.GetVersion()
	if sameContent(cur, next) {
		return cur, nil // nothing changed: no new version
	}
	out, err := s.store.Update(ctx, store.Write{
		Plan: clientFields(next), MatchEtag: cur.GetEtag(), Actor: p.Actor(), RequestKey: key, Audit: rec.ev,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	rec.done = true
	return out, nil
}

func (s *carePlanService) ListCarePlans(ctx context.Context, req *careplanv1.ListCarePlansRequest) (*careplanv1.ListCarePlansResponse, error) {
	p := principal(ctx)
	if !p.HasRole(auth.RoleRead) {
		return nil, toStatus(policy.MissingRole(auth.RoleRead))
	}
	filter := fmt.Sprintf("%d|%s|%s", req.GetStatus(), req.GetCoordinatorId(), req.GetReviewDueBefore())
	after, err := decodePageToken(req.GetPageToken(), filter)
	if err != nil {
		return nil, toStatus(err)
	}
	plans, next, err := s.store.ListPlans(ctx, store.PlanQuery{
		Org: p.Org, After: after, Limit: pageSize(req.GetPageSize(), s.limits.MaxPageSize), MaxBytes: s.pageBytes,
		Status: req.GetStatus(), CoordinatorID: req.GetCoordinatorId(), ReviewDueBefore: req.GetReviewDueBefore(),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	// Every plan shown is a read of that plan, audited like a Get.
	events := make([]*careplanv1.AuditEvent, 0, len(plans))
	resp := &careplanv1.ListCarePlansResponse{CarePlans: make([]*careplanv1.CarePlan, 0, len(plans)), NextPageToken: encodePageToken(next, filter)}
	for _, plan := range plans {
		ev := newAuditEvent(ctx, p, careplanv1.CarePlanService_ListCarePlans_FullMethodName, plan.NhsNumber, req)
		ev.Outcome, ev.PlanVersion = outcome(nil), plan.Version
		events = append(events, ev)
		resp.CarePlans = append(resp.CarePlans, encodedPlan(plan.Body))
	}
	if len(events) > 0 {
		if err := appendAudit(ctx, s.store, events...); err != nil {
			return nil, toStatus(err)
		}
	}
	return resp, nil
}

func (s *carePlanService) ListCarePlanVersions(ctx context.Context, req *careplanv1.ListCarePlanVersionsRequest) (*careplanv1.ListCarePlanVersionsResponse, error) {
	if _, err := s.readable(ctx, req.GetNhsNumber()); err != nil {
		return nil, toStatus(err)
	}
	afterToken, err := decodePageToken(req.GetPageToken(), req.GetNhsNumber())
	if err != nil {
		return nil, toStatus(err)
	}
	var after int64
	if afterToken != "" {
		if after, err = strconv.ParseInt(afterToken, 10, 64); err != nil {
			return nil, toStatus(invalid(validate.FieldViolation{Field: "page_token", Description: "invalid page token"}))
		}
	}
	// A page ends at page_size versions or at the byte bound, whichever
	// comes first; the token continues after its last version.
	versions, more, err := s.store.ListVersionsWithin(ctx, req.GetNhsNumber(), after, pageSize(req.GetPageSize(), s.limits.MaxPageSize), s.pageBytes)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &careplanv1.ListCarePlanVersionsResponse{Versions: versions}
	if more {
		resp.NextPageToken = encodePageToken(strconv.FormatInt(versions[len(versions)-1].GetVersion(), 10), req.GetNhsNumber())
	}
	return resp, nil
}

// readable returns the current plan, as stored, if the caller may read it.
// A break-glass read is recorded (audit and change feed) before the plan is
// returned.
func (s *carePlanService) readable(ctx context.Context, nhs string) (*store.StoredPlan, error) {
	p := principal(ctx)
	// Callers with no read role at all learn nothing, not even existence.
	if !p.HasRole(auth.RoleRead) && !p.HasRole(auth.RoleBreakGlass) {
		return nil, policy.MissingRole(auth.RoleRead)
	}
	sp, err := s.store.GetStored(ctx, nhs, p.Org)
	if err != nil {
		return nil, err
	}
	rec := auditFrom(ctx)
	breakGlass, err := policy.CheckRead(p, sp.Facts, rec.ev.GetAccessReason())
	if err != nil {
		return nil, err
	}
	rec.ev.PlanVersion = sp.Version
	if breakGlass {
		plan := &careplanv1.CarePlan{NhsNumber: nhs, Version: sp.Version}
		err := s.store.RecordAccess(ctx, store.Access{Plan: plan, Actor: p.Actor(), Reason: rec.ev.GetAccessReason(), Audit: rec.ev})
		if err != nil {
			return nil, err
		}
		rec.done = true
	}
	return sp, nil
}

// replay returns the result of an earlier write with the same request key.
func (s *carePlanService) replay(ctx context.Context, key string) (*careplanv1.CarePlan, bool, error) {
	if key == "" {
		return nil, false, nil
	}
	return s.store.LookupRequest(ctx, key)
}

// requestKey scopes a client's request_id to its issuer, subject and method,
// so one caller's ids can never replay another's writes. It is hashed: a
// fixed-length, printable key that any store can hold (PostgreSQL text
// cannot hold the NUL bytes a caller may put in an id).
func requestKey(p *auth.Principal, method, requestID string) string {
	if requestID == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{p.Issuer, p.Subject, method, requestID}, "\x00")))
	return hex.EncodeToString(sum[:])
}

// principal returns the caller; the auth interceptor guarantees one.
func principal(ctx context.Context) *auth.Principal {
	p, ok := auth.FromContext(ctx)
	if !ok {
		panic("server: handler reached without a principal")
	}
	return p
}

// assignIDs gives every goal and activity without an id a random one.
func assignIDs(p *careplanv1.CarePlan) {
	for _, g := range p.GetGoals() {
		if g.GetId() == "" {
			g.Id = newID("g")
		}
	}
	for _, a := range p.GetActivities() {
		if a.GetId() == "" {
			a.Id = newID("a")
		}
	}
}

func newID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}
