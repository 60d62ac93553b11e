package server

import (
	"context"
	"fmt"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/validate"
)

const (
	maxRequestIDChars = 128
	defaultPageSize   = 25
)

// validationUnary rejects a malformed request before any handler runs, with
// every bad field path. go-grpc-middleware's validator interceptor is not
// used because it flattens errors to a string and would drop the
// google.rpc.BadRequest details that clients rely on.
func validationUnary(l validate.Limits) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if vs := checkRequest(l, req); len(vs) > 0 {
			return nil, toStatus(invalid(vs...))
		}
		return handler(ctx, req)
	}
}

// validationStream checks each message a streaming client sends.
func validationStream(l validate.Limits) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &validatingStream{WrappedServerStream: middleware.WrapServerStream(ss), limits: l})
	}
}

type validatingStream struct {
	*middleware.WrappedServerStream
	limits validate.Limits
}

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if vs := checkRequest(s.limits, m); len(vs) > 0 {
		return toStatus(invalid(vs...))
	}
	return nil
}

// checkRequest validates (and normalises in place) one request message.
// Update is checked here only as far as the request goes; the merged plan is
// validated by the handler once the mask is applied.
func checkRequest(l validate.Limits, req any) []validate.FieldViolation {
	var vs []validate.FieldViolation
	switch r := req.(type) {
	case *careplanv1.CreateCarePlanRequest:
		if r.GetCarePlan() == nil {
			vs = append(vs, required("care_plan"))
		} else {
			vs = append(vs, l.CarePlan(r.GetCarePlan(), "care_plan")...)
		}
		vs = append(vs, checkRequestID(r.GetRequestId())...)
	case *careplanv1.GetCarePlanRequest:
		vs = append(vs, checkNHS(&r.NhsNumber, "nhs_number", true)...)
	case *careplanv1.UpdateCarePlanRequest:
		if r.GetCarePlan() == nil {
			vs = append(vs, required("care_plan"))
			break
		}
		vs = append(vs, checkNHS(&r.CarePlan.NhsNumber, "care_plan.nhs_number", true)...)
		if r.GetCarePlan().GetEtag() == "" {
			vs = append(vs, validate.FieldViolation{Field: "care_plan.etag", Description: "required: send the etag of the version this change is based on"})
		}
		vs = append(vs, checkMask(r.GetUpdateMask().GetPaths())...)
		vs = append(vs, checkRequestID(r.GetRequestId())...)
	case *careplanv1.ListCarePlansRequest:
		vs = append(vs, checkPageSize(r.GetPageSize())...)
		vs = append(vs, checkEnum(r.GetStatus(), "status")...)
		if len([]rune(r.GetCoordinatorId())) > l.MaxShortString {
			vs = append(vs, validate.FieldViolation{Field: "coordinator_id", Description: fmt.Sprintf("at most %d characters", l.MaxShortString)})
		}
		if d := r.GetReviewDueBefore(); d != "" {
			if err := validate.Date(d); err != nil {
				vs = append(vs, validate.FieldViolation{Field: "review_due_before", Description: err.Error()})
			}
		}
	case *careplanv1.ListCarePlanVersionsRequest:
		vs = append(vs, checkNHS(&r.NhsNumber, "nhs_number", true)...)
		vs = append(vs, checkPageSize(r.GetPageSize())...)
	case *careplanv1.WatchCarePlansRequest:
		if r.GetFromRevision() < 0 {
			vs = append(vs, validate.FieldViolation{Field: "from_revision", Description: "must not be negative"})
		}
	case *careplanv1.ListAuditEventsRequest:
		vs = append(vs, checkNHS(&r.NhsNumber, "nhs_number", false)...)
		vs = append(vs, checkPageSize(r.GetPageSize())...)
		if r.GetStartTime() != nil && r.GetEndTime() != nil && r.GetEndTime().AsTime().Before(r.GetStartTime().AsTime()) {
			vs = append(vs, validate.FieldViolation{Field: "end_time", Description: "must not be before start_time"})
		}
	}
	return vs
}

func required(field string) validate.FieldViolation {
	return validate.FieldViolation{Field: field, Description: "required"}
}

// checkNHS validates and normalises an NHS number field.
func checkNHS(nhs *string, field string, isRequired bool) []validate.FieldViolation {
	if *nhs == "" {
		if isRequired {
			return []validate.FieldViolation{required(field)}
		}
		return nil
	}
	n, err := validate.NHSNumber(*nhs)
	if err != nil {
		return []validate.FieldViolation{{Field: field, Description: err.Error()}}
	}
	*nhs = n
	return nil
}

func checkRequestID(id string) []validate.FieldViolation {
	if len([]rune(id)) > maxRequestIDChars {
		return []validate.FieldViolation{{Field: "request_id", Description: fmt.Sprintf("at most %d characters", maxRequestIDChars)}}
	}
	return nil
}

func checkPageSize(n int32) []validate.FieldViolation {
	if n < 0 {
		return []validate.FieldViolation{{Field: "page_size", Description: "must not be negative"}}
	}
	return nil
}

// pageSize applies AIP-158: 0 means the default, larger than max is clamped.
func pageSize(n int32, max int) int {
	switch {
	case n == 0:
		return min(defaultPageSize, max)
	case int(n) > max:
		return max
	}
	return int(n)
}

func checkEnum(e protoreflect.Enum, field string) []validate.FieldViolation {
	if e.Descriptor().Values().ByNumber(e.Number()) == nil {
		return []validate.FieldViolation{{Field: field, Description: "unknown enum value"}}
	}
	return nil
}
