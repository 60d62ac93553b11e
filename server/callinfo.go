package server

import (
	"context"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/auth"
)

// callInfo is filled in as a call passes inward (auth sets who called) and
// read by the logging interceptor when the call finishes. It is created
// outermost because the logger's context cannot see values added later.
type callInfo struct {
	subject, org string
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
	return handler(withCallInfo(ctx), req)
}

func callInfoStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = withCallInfo(ss.Context())
	return handler(srv, w)
}

// callFields are the log fields of a call: who called, never what about.
func callFields(ctx context.Context) logging.Fields {
	ci := callInfoFrom(ctx)
	if ci == nil || ci.subject == "" {
		return nil
	}
	return logging.Fields{"sub", ci.subject, "org", ci.org}
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
