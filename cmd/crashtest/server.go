package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

const (
	// startupLimit bounds how long a server may take to bind and report
	// SERVING; it opens an existing bbolt file, which is quick.
	startupLimit = 15 * time.Second
	// killLimit bounds the wait for a SIGKILLed process to be reaped.
	killLimit = 10 * time.Second
	// healthPoll is the pause between health checks during startup.
	healthPoll = 20 * time.Millisecond
)

// buildServer compiles the server binary once into dir, so every cycle runs
// the same executable and no cycle pays for (or races) a build.
func buildServer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "careplan-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/careplan/careplan/cmd/careplan-server")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build careplan-server: %w\n%s", err, out)
	}
	return bin, nil
}

// serverProc is one run of the server binary.
type serverProc struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{} // closed once the process has been reaped
}

// startServer runs the binary in dev mode on an ephemeral loopback port,
// with extra flags, and returns once it reports SERVING. Its stderr (logs, panics) is appended to
// logw. On error no process is left running.
func startServer(ctx context.Context, bin, data string, shutdownTimeout time.Duration, logw io.Writer, extra ...string) (*serverProc, error) {
	addrs := &addrScanner{found: make(chan string, 1)}
	args := append([]string{"--dev", "--addr", "127.0.0.1:0", "--data", data,
		"--shutdown-timeout", shutdownTimeout.String(), "--log-level", "WARN"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = addrs, logw
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	s := &serverProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // the outcome is read from cmd.ProcessState
		close(s.exited)
	}()
	if err := s.awaitServing(ctx, addrs.found); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

func (s *serverProc) awaitServing(ctx context.Context, found <-chan string) error {
	ctx, cancel := context.WithTimeout(ctx, startupLimit)
	defer cancel()
	select {
	case s.addr = <-found:
	case <-s.exited:
		return fmt.Errorf("server exited during startup: %v", s.cmd.ProcessState)
	case <-ctx.Done():
		return fmt.Errorf("server did not report its address: %w", ctx.Err())
	}
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	// The care plan service's own status, which also reflects whether the
	// store is writable.
	req := &healthpb.HealthCheckRequest{Service: careplanv1.CarePlanService_ServiceDesc.ServiceName}
	for {
		resp, err := health.Check(ctx, req)
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("server exited during startup: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("server not SERVING within %v (last check: %v %v)", startupLimit, resp.GetStatus(), err)
		case <-time.After(healthPoll):
		}
	}
}

const (
	sigkill = syscall.SIGKILL
	sigterm = syscall.SIGTERM
)

// signalName spells the two signals as the issue does (syscall's String
// says "killed" and "terminated").
func signalName(sig syscall.Signal) string {
	if sig == sigterm {
		return "SIGTERM"
	}
	return "SIGKILL"
}

// stop sends sig and waits up to limit for the process to exit. A process
// that had already exited, or outlives limit, is an error (the latter is
// then killed).
func (s *serverProc) stop(sig syscall.Signal, limit time.Duration) (*os.ProcessState, time.Duration, error) {
	select {
	case <-s.exited:
		return nil, 0, fmt.Errorf("server exited on its own before %s: %v", signalName(sig), s.cmd.ProcessState)
	default:
	}
	start := time.Now()
	if err := s.cmd.Process.Signal(sig); err != nil {
		return nil, 0, fmt.Errorf("send %s: %w", signalName(sig), err)
	}
	select {
	case <-s.exited:
		return s.cmd.ProcessState, time.Since(start), nil
	case <-time.After(limit):
		s.kill()
		return nil, time.Since(start), fmt.Errorf("server did not exit within %v of %s", limit, signalName(sig))
	}
}

// kill makes sure the process is gone; it is safe to call at any time.
func (s *serverProc) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.exited:
	case <-time.After(killLimit):
	}
}

// listeningRE matches the dev banner's "listening on ADDR (loopback only)".
// The trailing " (" makes sure a write cut mid-address does not match.
var listeningRE = regexp.MustCompile(`listening on (\S+) \(`)

// addrScanner reads the address the server bound from its stdout. Passing
// --addr 127.0.0.1:0 and reading it back means the harness never races
// another process for a "free" port.
type addrScanner struct {
	mu    sync.Mutex
	buf   []byte
	found chan string // buffered, receives once
	done  bool
}

// maxBanner bounds what addrScanner keeps while looking for the address.
const maxBanner = 64 << 10

func (a *addrScanner) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return len(p), nil
	}
	a.buf = append(a.buf, p...)
	if m := listeningRE.FindSubmatch(a.buf); m != nil {
		a.found <- string(m[1])
		a.done, a.buf = true, nil
	} else if len(a.buf) > maxBanner {
		a.done, a.buf = true, nil // no banner: awaitServing times out
	}
	return len(p), nil
}
