// Command careplan-server serves the careplan gRPC API on an embedded bbolt
// store. `careplan-server --dev` runs it with nothing else installed;
// `careplan-server verify-audit [--data FILE | --store URL]` checks the audit
// hash chain;
// `careplan-server health` asks a running server whether it is SERVING.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/careplan/careplan/internal/logbuf"
	"github.com/careplan/careplan/metrics"
	"github.com/careplan/careplan/server"
	"github.com/careplan/careplan/store"
)

func main() {
	// The live heap is small (tens of MB) while each call allocates a plan's
	// worth, so the default GOGC=100 collects very often: profiles showed
	// GC as a fifth of CPU. A higher target trades memory for that CPU
	// (GOGC 400 -> 1000: 82 -> 72 us of CPU per read, heap 39 -> 86 MB),
	// and a soft limit keeps the trade bounded if the live heap grows.
	// GOGC and GOMEMLIMIT in the environment still win.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(1000)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "verify-audit":
		err = verifyAudit(ctx, os.Args[2:], os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "health":
		err = health(ctx, os.Args[2:], os.Stdout, os.Stderr)
	default:
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "careplan-server:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// logFlushInterval bounds how long an INFO line waits in the log buffer.
const logFlushInterval = 100 * time.Millisecond

// run starts the server and blocks until ctx ends, then drains in-flight
// calls (bounded by --shutdown-timeout) and closes the store. ready, when not
// nil, receives the listening address (for tests).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// One finished-call line per call: batched into a write every
	// logFlushInterval (warnings and errors at once), not a write per call.
	logOut := logbuf.New(stderr, 64<<10, logFlushInterval)
	defer logOut.Close()
	logger := slog.New(logbuf.Handler(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: cfg.logLevel}), logOut, slog.LevelWarn))

	verifier, banner, err := cfg.verifier(time.Now(), logger)
	if err != nil {
		return err
	}
	defer verifier.Close()
	creds, err := cfg.transportCredentials()
	if err != nil {
		return err
	}
	reg := metrics.New()
	st, err := openStore(ctx, cfg, reg)
	if err != nil {
		return err
	}
	defer st.Close()
	if p, ok := st.(store.RequestPruner); ok && cfg.requestRetention > 0 {
		pruneCtx, stopPruning := context.WithCancel(ctx)
		pruned := make(chan struct{})
		go func() {
			defer close(pruned)
			pruneRequests(pruneCtx, p, cfg.requestRetention, logger)
		}()
		// Before the store closes (defers run last first).
		defer func() { stopPruning(); <-pruned }()
	}
	if cfg.metricsAddr != "" {
		maddr, _, err := reg.Serve(ctx, cfg.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		logger.Info("metrics listening", "addr", maddr, "path", "/metrics")
	}

	srv, err := server.New(server.Config{
		Store: st, Verifier: verifier, Logger: logger, Creds: creds, MaxRequestBytes: cfg.maxRequestBytes,
		Metrics:              reg.GRPC,
		MaxConcurrentStreams: uint32(cfg.maxConcurrentStreams),
		RateLimit:            server.RateLimit{PerSecond: cfg.rateLimit, Burst: cfg.rateBurst},
	})
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	addr := lis.Addr().String()
	logger.Info("careplan-server listening", "addr", addr, "store", cfg.storeName(), "tls", creds != nil, "dev", cfg.dev)
	_ = logOut.Flush() // the start-up lines, before anyone is told we are up
	if banner != nil {
		banner(stdout, addr)
	}
	if ready != nil {
		ready <- addr
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: draining in-flight calls", "timeout", cfg.shutdownTimeout.String())
	srv.Shutdown(cfg.shutdownTimeout)
	logger.Info("stopped")
	return nil
}
