package server

import (
	"context"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/auth"
)

// callInfo is filled in as a call passes inward (auth sets who called) and
// read by the logging interceptor when the call finishes. It is created
// outermost because the logger's context cannot see values added later.
type callInfo struct {
	subject, org, requestID string
}

type callInfoKey struct{}

func withCallInfo(ctx context.Context) context.Context {
	return context.WithValue(ctx, callInfoKey{}, &callInfo{})
}

func callInfoFrom(ctx context.Context) *callInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*callInfo)
	return ci
}

func callInfoUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx = withCallInfo(ctx)
	ci := callInfoFrom(ctx)
	ci.requestID = requestIDHeader(ctx)
	if r, ok := req.(interface{ GetRequestId() string }); ok && r.GetRequestId() != "" {
		ci.requestID = truncate(r.GetRequestId(), maxRequestIDChars)
	}
	return handler(ctx, req)
}

// requestIDHeader is the caller's x-request-id, for tracing a call across
// systems in the logs.
func requestIDHeader(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, "x-request-id"); len(v) > 0 {
		return truncate(v[0], maxRequestIDChars)
	}
	return ""
}

func callInfoStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = withCallInfo(ss.Context())
	callInfoFrom(w.WrappedContext).requestID = requestIDHeader(ss.Context())
	return handler(srv, w)
}

// callFields are the log fields of a call: who called and the request id,
// never what about (no NHS number, name or plan body).
func callFields(ctx context.Context) logging.Fields {
	ci := callInfoFrom(ctx)
	if ci == nil {
		return nil
	}
	var f logging.Fields
	if ci.subject != "" {
		f = append(f, "sub", ci.subject, "org", ci.org)
	}
	if ci.requestID != "" {
		f = append(f, "request_id", ci.requestID)
	}
	return f
}

type authenticator struct {
	verifier TokenVerifier
}

// authenticate is the AuthFunc: it verifies the bearer token and stores the
// principal. It only ever fails with UNAUTHENTICATED.
func (a *authenticator) authenticate(ctx context.Context) (context.Context, error) {
	token, err := grpcauth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, withDetails(status.New(codes.Unauthenticated, "missing bearer token in the authorization metadata"),
			&errdetails.ErrorInfo{Reason: "MISSING_TOKEN", Domain: errorDomain})
	}
	p, err := a.verifier.Verify(ctx, token)
	if err != nil {
		return nil, toStatus(err)
	}
	if ci := callInfoFrom(ctx); ci != nil {
		ci.subject, ci.org = p.Subject, p.Org
	}
	return auth.NewContext(ctx, p), nil
}
