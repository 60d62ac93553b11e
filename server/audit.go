package server

import (
	"context"
	"strings"
	"time"
	"unicode"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/validate"
)

const (
	// accessReasonHeader carries the reason for a break-glass read.
	accessReasonHeader = "x-access-reason"
	maxReasonChars     = 1000
	maxAuditedNHSChars = 32
	// auditTimeout bounds the audit write of a call whose caller has gone:
	// a denied or failed call is recorded even if the client hung up.
	auditTimeout = 5 * time.Second
)

// auditRecord is the audit event of one call. The handler adds what only it
// knows (the plan version) and marks it done when the store recorded the
// event together with the change.
type auditRecord struct {
	ev   *careplanv1.AuditEvent
	done bool
}

type auditKey struct{}

func auditFrom(ctx context.Context) *auditRecord {
	r, _ := ctx.Value(auditKey{}).(*auditRecord)
	if r == nil {
		return &auditRecord{} // a call outside the interceptor: nothing to fill
	}
	return r
}

// auditUnary records every authenticated call that names a plan, allowed,
// denied or failed. The event is durable before the response is sent: if it
// cannot be written the call fails with UNAVAILABLE.
func auditUnary(st store.Store) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, ok := auth.FromContext(ctx)
		nhs := namedPlan(req)
		if !ok || nhs == "" {
			return handler(ctx, req)
		}
		rec := &auditRecord{ev: newAuditEvent(ctx, p, info.FullMethod, nhs, req)}
		resp, err := handler(context.WithValue(ctx, auditKey{}, rec), req)
		if rec.done {
			return resp, err
		}
		rec.ev.Outcome = outcome(err)
		if aerr := appendAudit(ctx, st, rec.ev); aerr != nil {
			return nil, toStatus(aerr)
		}
		return resp, err
	}
}

// outcome is the canonical gRPC code name of err (OK, PERMISSION_DENIED…),
// as google.rpc.Code spells it.
func outcome(err error) string {
	return code.Code(status.Code(err)).String()
}

// appendAudit writes events even when the caller has gone away.
func appendAudit(ctx context.Context, st store.Store, events ...*careplanv1.AuditEvent) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	return st.AppendAudit(ctx, events...)
}

func newAuditEvent(ctx context.Context, p *auth.Principal, method, nhs string, req any) *careplanv1.AuditEvent {
	ev := &careplanv1.AuditEvent{
		Time:         timestamppb.Now(),
		Subject:      p.Subject,
		OrgCode:      p.Org,
		OrgType:      p.OrgType,
		Roles:        p.Roles,
		Method:       method,
		NhsNumber:    auditedNHS(nhs),
		AccessReason: accessReason(ctx),
	}
	if r, ok := req.(interface{ GetRequestId() string }); ok {
		ev.RequestId = truncate(r.GetRequestId(), maxRequestIDChars)
	}
	return ev
}

// namedPlan returns the NHS number a request names, as sent, or "".
func namedPlan(req any) string {
	switch r := req.(type) {
	case interface{ GetCarePlan() *careplanv1.CarePlan }:
		return r.GetCarePlan().GetNhsNumber()
	case interface{ GetNhsNumber() string }:
		return r.GetNhsNumber()
	}
	return ""
}

// auditedNHS normalises a valid number; an invalid one is kept as sent (it
// is what the caller asked about), but as clean text.
func auditedNHS(nhs string) string {
	if n, err := validate.NHSNumber(nhs); err == nil {
		return n
	}
	return cleanText(nhs, maxAuditedNHSChars)
}

// accessReason is the x-access-reason header as clean text. gRPC does not
// check header bytes, and an audit record cannot hold invalid UTF-8.
func accessReason(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, accessReasonHeader); len(v) > 0 {
		return cleanText(v[0], maxReasonChars)
	}
	return ""
}

// cleanText bounds caller-sent text to n characters, and makes it safe for
// every store: invalid UTF-8 becomes U+FFFD (strings.Map does that), and
// control characters, which some stores cannot hold, are dropped.
func cleanText(s string, n int) string {
	return truncate(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s), n)
}

func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}
