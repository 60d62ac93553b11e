package client

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinels for errors.Is. An *Error matches the sentinel of its gRPC code,
// so callers can branch on the kind of failure without importing grpc:
//
//	if errors.Is(err, client.ErrEtagMismatch) { ... re-read and retry ... }
var (
	ErrNotFound         = errors.New("careplan: not found")
	ErrAlreadyExists    = errors.New("careplan: already exists")
	ErrEtagMismatch     = errors.New("careplan: etag mismatch")
	ErrPermissionDenied = errors.New("careplan: permission denied")
	ErrInvalidArgument  = errors.New("careplan: invalid argument")
	ErrUnauthenticated  = errors.New("careplan: unauthenticated")
	ErrUnavailable      = errors.New("careplan: unavailable")
)

// sentinels maps each code to its sentinel. ABORTED is the only code the
// server uses for a stale etag (AIP-154), so it stands for ErrEtagMismatch.
var sentinels = map[codes.Code]error{
	codes.NotFound:         ErrNotFound,
	codes.AlreadyExists:    ErrAlreadyExists,
	codes.Aborted:          ErrEtagMismatch,
	codes.PermissionDenied: ErrPermissionDenied,
	codes.InvalidArgument:  ErrInvalidArgument,
	codes.Unauthenticated:  ErrUnauthenticated,
	codes.Unavailable:      ErrUnavailable,
}

// Error is a failed call, decoded from the gRPC status and its AIP-193
// details so callers need not unpack Any messages themselves.
type Error struct {
	Code codes.Code
	// Reason is the ErrorInfo reason, e.g. PLAN_NOT_FOUND, ETAG_MISMATCH,
	// NOT_RELATED; empty if the status carried no ErrorInfo (for example an
	// error raised by the gRPC transport rather than the server).
	Reason  string
	Message string
	// Fields are the field paths from a BadRequest: the invalid fields of an
	// INVALID_ARGUMENT, or the forbidden changes of a PERMISSION_DENIED.
	Fields []string
	// Metadata is the ErrorInfo metadata, e.g. current_etag.
	Metadata map[string]string

	status *status.Status // as received, for GRPCStatus
}

// Error formats the code by its canonical name (NOT_FOUND, as in the audit
// log and the CLI) rather than grpc-go's CamelCase.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("careplan: ")
	b.WriteString(code.Code(e.Code).String())
	if e.Reason != "" {
		b.WriteString(" (" + e.Reason + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if len(e.Fields) > 0 {
		b.WriteString(" [" + strings.Join(e.Fields, ", ") + "]")
	}
	return b.String()
}

// Is reports whether target is the sentinel for e's code. Canceled and
// DeadlineExceeded also match the context errors, because gRPC reports an
// expired or cancelled context as a status, which would otherwise hide it
// from errors.Is(err, context.DeadlineExceeded).
func (e *Error) Is(target error) bool {
	switch {
	case target == nil:
		return false
	case target == sentinels[e.Code]:
		return true
	case e.Code == codes.Canceled:
		return target == context.Canceled
	case e.Code == codes.DeadlineExceeded:
		return target == context.DeadlineExceeded
	}
	return false
}

// CurrentEtag returns the plan's current etag that an ETAG_MISMATCH carries,
// or "" for any other error.
func (e *Error) CurrentEtag() string { return e.Metadata["current_etag"] }

// GRPCStatus lets status.Code and status.FromError see through an *Error,
// for example when a server built on this client returns it unchanged.
func (e *Error) GRPCStatus() *status.Status {
	if e.status != nil {
		return e.status
	}
	return status.New(e.Code, e.Message)
}

// FromError converts a gRPC status error into an *Error. nil, context errors,
// an *Error already, and errors that carry no gRPC status are returned
// unchanged.
func FromError(err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e = &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			e.Reason = d.GetReason()
			e.Metadata = d.GetMetadata()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.Fields = append(e.Fields, v.GetField())
			}
		}
	}
	return e
}
