// Package server builds the careplan gRPC server: the interceptor chain,
// the services, health and reflection. Handlers are thin: they check the
// request, ask the policy, call the store and map the error in one table.
package server

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/validate"
)

// streamWorkers is how many goroutines serve calls; calls beyond it get a
// goroutine of their own, as without workers. Reads wait on a group commit,
// so it is sized for many calls in flight, not for the CPU count.
const streamWorkers = 256

// DefaultMaxRequestBytes is the largest request message accepted (1 MiB).
const DefaultMaxRequestBytes = 1 << 20

// DefaultMaxResponseBytes bounds the plans one list response carries (4 MiB).
const DefaultMaxResponseBytes = 4 << 20

// TokenVerifier turns a bearer token into a verified principal.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*auth.Principal, error)
}

// Config holds everything New needs.
type Config struct {
	Store    store.Store
	Verifier TokenVerifier
	// Logger receives one line per call; never request bodies. Default
	// slog.Default().
	Logger *slog.Logger
	// Limits bound request contents. Zero value: validate.DefaultLimits().
	Limits validate.Limits
	// MaxRequestBytes bounds one request message. Default 1 MiB; larger
	// requests fail with RESOURCE_EXHAUSTED.
	MaxRequestBytes int
	// MaxResponseBytes bounds the plans (as stored) in one page of
	// ListCarePlans or ListCarePlanVersions: a page ends early, with a
	// next_page_token, rather than go over it, and holds at least one plan.
	// Default 4 MiB.
	MaxResponseBytes int
	// Creds enables TLS (or mutual TLS); nil serves plaintext.
	Creds credentials.TransportCredentials
	// Watch bounds slow watchers.
	Watch WatchOptions
	// RateLimit bounds each caller; zero PerSecond turns it off.
	RateLimit RateLimit
	// MaxConcurrentStreams bounds the calls in flight on one connection.
	// Default 1000.
	MaxConcurrentStreams uint32
	// KeepaliveMinTime: clients that ping more often are disconnected
	// (GOAWAY too_many_pings). Default 10s.
	KeepaliveMinTime time.Duration
	// KeepaliveTime: the server pings a connection idle this long, and
	// closes it if no answer comes within KeepaliveTimeout. Defaults 1m, 20s.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// TokenCacheSize bounds how many verified tokens are remembered (each
	// for at most TokenCacheMaxAge and never past its exp). Default 10000;
	// negative turns the cache off.
	TokenCacheSize   int
	TokenCacheMaxAge time.Duration
	// Metrics, when set, counts calls and times them by method and code.
	Metrics *grpcprom.ServerMetrics
	// ExtraOptions are appended to the server options (tests, metrics).
	ExtraOptions []grpc.ServerOption
}

// Server is the careplan gRPC server with its health service.
type Server struct {
	*grpc.Server
	Health *health.Server
}

// New builds the one grpc.Server of the process: the interceptor chain,
// message limits, CarePlanService, health and reflection.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Verifier == nil {
		return nil, errors.New("server: Store and Verifier are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Limits == (validate.Limits{}) {
		cfg.Limits = validate.DefaultLimits()
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = 1000
	}
	cfg.KeepaliveMinTime = cmp.Or(cfg.KeepaliveMinTime, 10*time.Second)
	cfg.KeepaliveTime = cmp.Or(cfg.KeepaliveTime, time.Minute)
	cfg.KeepaliveTimeout = cmp.Or(cfg.KeepaliveTimeout, 20*time.Second)
	limits := newCallerLimits(cfg.RateLimit)
	verifier := cfg.Verifier
	if cfg.TokenCacheSize >= 0 {
		verifier = newTokenCache(cfg.Verifier, cmp.Or(cfg.TokenCacheSize, 10000), cmp.Or(cfg.TokenCacheMaxAge, 5*time.Minute))
	}
	svc := &carePlanService{store: cfg.Store, limits: cfg.Limits, watch: cfg.Watch, pageBytes: cfg.MaxResponseBytes}
	a := &authenticator{verifier: verifier}
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithFieldsFromContext(callFields),
		// Constant on every line of this server: "protocol":"grpc",
		// "grpc.component":"server"; the method names its type.
		logging.WithDisableLoggingFields(logging.SystemTag[0], logging.ComponentFieldKey, logging.MethodTypeFieldKey),
	}
	// Only health and reflection are served without a token.
	needsToken := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName &&
			!strings.HasPrefix(c.Service, "grpc.reflection.")
	})
	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		cfg.Logger.ErrorContext(ctx, "panic in handler", "panic", p)
		return status.Error(codes.Internal, "internal error")
	})
	logger := interceptorLogger(cfg.Logger)
	metricsUnary, metricsStream := noopUnary, noopStream
	if cfg.Metrics != nil {
		metricsUnary, metricsStream = cfg.Metrics.UnaryServerInterceptor(), cfg.Metrics.StreamServerInterceptor()
	}

	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		// Reused handler goroutines keep the stack the interceptor chain
		// grew; a new goroutine per call spent ~10% of read CPU growing it.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: cfg.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: cfg.KeepaliveTime, Timeout: cfg.KeepaliveTimeout}),
		// Order: call info (so the logger sees who called) → metrics →
		// logging →
		// auth → per-caller rate limit (before audit, so a flood costs no
		// writes) → audit → validation → recovery (innermost, so a panic
		// becomes INTERNAL and is still logged and audited).
		grpc.ChainUnaryInterceptor(
			callInfoUnary,
			metricsUnary,
			logging.UnaryServerInterceptor(logger, logOpts...),
			selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(a.authenticate), needsToken),
			limits.unary,
			auditUnary(cfg.Store),
			validationUnary(cfg.Limits),
			recovery.UnaryServerInterceptor(recoverOpt),
		),
		grpc.ChainStreamInterceptor(
			callInfoStream,
			metricsStream,
			logging.StreamServerInterceptor(logger, logOpts...),
			selector.StreamServerInterceptor(grpcauth.StreamServerInterceptor(a.authenticate), needsToken),
			limits.stream,
			// No audit here: the only stream, WatchCarePlans, names no
			// plan, and it delivers only to related organisations.
			validationStream(cfg.Limits),
			recovery.StreamServerInterceptor(recoverOpt),
		),
	}
	if cfg.Creds != nil {
		opts = append(opts, grpc.Creds(cfg.Creds))
	}
	opts = append(opts, cfg.ExtraOptions...)

	gs := grpc.NewServer(opts...)
	careplanv1.RegisterCarePlanServiceServer(gs, svc)
	careplanv1.RegisterAuditServiceServer(gs, &auditService{store: cfg.Store, limits: cfg.Limits})
	careplanv1.RegisterAdminServiceServer(gs, &adminService{store: cfg.Store})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus(careplanv1.CarePlanService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if hr, ok := cfg.Store.(store.HealthReporter); ok {
		hr.OnHealthChange(func(writable bool) {
			st := healthpb.HealthCheckResponse_SERVING
			if !writable {
				st = healthpb.HealthCheckResponse_NOT_SERVING
				cfg.Logger.Error("store cannot write: reporting NOT_SERVING until it recovers")
			} else {
				cfg.Logger.Info("store writable again: SERVING")
			}
			hs.SetServingStatus("", st)
			hs.SetServingStatus(careplanv1.CarePlanService_ServiceDesc.ServiceName, st)
		})
	}
	reflection.Register(gs)
	if cfg.Metrics != nil {
		cfg.Metrics.InitializeMetrics(gs)
	}
	return &Server{Server: gs, Health: hs}, nil
}

func noopUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(ctx, req)
}

func noopStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, ss)
}

// interceptorLogger adapts slog to the middleware's logger.
func interceptorLogger(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// Shutdown reports NOT_SERVING, lets in-flight calls finish for up to
// timeout, then stops hard. The caller closes the store afterwards.
func (s *Server) Shutdown(timeout time.Duration) {
	s.Health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		s.Stop()
		<-done
	}
}
