package server

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/policy"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/validate"
)

// errorDomain is the ErrorInfo domain of every error this service returns.
const errorDomain = "careplan"

// errorTable is the one place domain errors become gRPC statuses (AIP-193).
// Order matters only where one error wraps another.
var errorTable = []struct {
	target error
	code   codes.Code
	reason string
	// public, when set, replaces the error text for the caller; the full
	// text (file paths, I/O detail) goes to the log instead.
	public string
}{
	{store.ErrNotFound, codes.NotFound, "PLAN_NOT_FOUND", ""},
	{store.ErrAlreadyExists, codes.AlreadyExists, "PLAN_ALREADY_EXISTS", ""},
	{store.ErrEtagMismatch, codes.Aborted, "ETAG_MISMATCH", ""},
	// Before ErrUnavailable, which it wraps.
	{store.ErrOutcomeUnknown, codes.Unavailable, "OUTCOME_UNKNOWN", "the store lost its database while committing this call, so it may or may not have been stored; read the plan, or retry with the same request_id"},
	{store.ErrUnavailable, codes.Unavailable, "STORE_UNAVAILABLE", "the store cannot be written or read right now; nothing was written; retry later"},
	{store.ErrInvalidRecord, codes.Internal, "RECORD_NOT_ENCODABLE", "the server could not encode this call's record; nothing was written"},
	// A genuine token from an organisation not allowed to connect: the
	// caller is known, so retrying with a fresh token cannot help.
	{auth.ErrOrgNotAllowed, codes.PermissionDenied, "ORG_NOT_ALLOWED", ""},
	{auth.ErrInvalidToken, codes.Unauthenticated, "INVALID_TOKEN", ""},
	{policy.ErrDenied, codes.PermissionDenied, "PERMISSION_DENIED", ""},
	{validate.ErrInvalid, codes.InvalidArgument, "INVALID_ARGUMENT", ""},
}

// toStatus maps err to a gRPC status error carrying an ErrorInfo, plus a
// BadRequest for field errors. Context errors and errors that already are
// statuses pass through unchanged. Messages never carry patient data: the
// domain packages keep it out of their error text.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, row := range errorTable {
		if !errors.Is(err, row.target) {
			continue
		}
		info := &errdetails.ErrorInfo{Reason: row.reason, Domain: errorDomain}
		var details []protoDetail
		var (
			mismatch *store.EtagMismatchError
			denied   *policy.DeniedError
			invalid  *validate.Error
		)
		switch {
		case errors.As(err, &mismatch):
			info.Metadata = map[string]string{"current_etag": mismatch.Current}
		case errors.As(err, &denied):
			info.Reason = denied.Reason
			if len(denied.Fields) > 0 {
				details = append(details, badRequest(denied.Fields, "not permitted for the caller's organisation"))
			}
		case errors.As(err, &invalid):
			br := &errdetails.BadRequest{}
			for _, v := range invalid.Violations {
				br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: v.Field, Description: v.Description})
			}
			details = append(details, br)
		}
		msg := err.Error()
		if row.public != "" {
			slog.Error("request failed", "code", row.code.String(), "error", msg)
			msg = row.public
		}
		return withDetails(status.New(row.code, msg), append([]protoDetail{info}, details...)...)
	}
	// An error no table row knows is a bug: log it, and tell the caller no
	// more than that.
	slog.Error("unmapped error", "error", err)
	return withDetails(status.New(codes.Internal, "internal error"), &errdetails.ErrorInfo{Reason: "INTERNAL", Domain: errorDomain})
}

type protoDetail = protoadapt.MessageV1

func withDetails(st *status.Status, details ...protoDetail) error {
	s, err := st.WithDetails(details...)
	if err != nil {
		return st.Err()
	}
	return s.Err()
}

func badRequest(fields []string, description string) *errdetails.BadRequest {
	br := &errdetails.BadRequest{}
	for _, f := range fields {
		br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f, Description: description})
	}
	return br
}

// invalid builds a request-level validation error (field path, description
// pairs) that toStatus maps to INVALID_ARGUMENT with a BadRequest.
func invalid(violations ...validate.FieldViolation) error {
	return &validate.Error{Violations: violations}
}
