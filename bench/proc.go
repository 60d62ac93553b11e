//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/devmode"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/server"
	"github.com/careplan/careplan/store/boltstore"
)

const (
	// startTimeout bounds how long a server may take to report SERVING.
	startTimeout = 60 * time.Second
	// stopTimeout bounds how long a server may take to exit after SIGTERM;
	// the server's own drain bound is 15s.
	stopTimeout = 30 * time.Second
)

// healthService is the health entry both the careplan and the bare server
// report, so start-up is measured the same way for each.
var healthService = careplanv1.CarePlanService_ServiceDesc.ServiceName

// target is a running gRPC server under test.
type target interface {
	Addr() string
	// StartUp is the time from starting the server until health said SERVING.
	StartUp() time.Duration
	// Mem reads the memory of the process serving (which is the bench
	// process itself for an in-process server).
	Mem() (memInfo, error)
	// CPU is the CPU time (user and system) the server process has used so
	// far; ok is false when it cannot be told apart from the bench's own.
	CPU() (d time.Duration, ok bool)
	// Stop shuts the server down gracefully and reports whether it exited
	// cleanly (exit status 0 for a process).
	Stop() error
}

// proc is a server running as its own process, so its RSS and start-up are
// its own and not the bench's.
type proc struct {
	name    string
	cmd     *exec.Cmd
	addr    string
	startUp time.Duration
	exited  chan struct{} // closed when the process has exited
	waitErr error
	// metricsAddr serves the server's /metrics, for careplan servers.
	metricsAddr string
}

// storeCounters are a careplan store's counters from its metrics: group
// commits (a bbolt transaction or an audit journal write, each with one
// fsync) and the operations they held; and unmaps of the data file's pages
// (--max-mapped-mb) and the time they took.
type storeCounters struct{ Groups, Ops, Unmaps, UnmapSeconds float64 }

func (g storeCounters) since(o storeCounters) storeCounters {
	return storeCounters{g.Groups - o.Groups, g.Ops - o.Ops, g.Unmaps - o.Unmaps, g.UnmapSeconds - o.UnmapSeconds}
}

func (g *storeCounters) add(o storeCounters) {
	g.Groups += o.Groups
	g.Ops += o.Ops
	g.Unmaps += o.Unmaps
	g.UnmapSeconds += o.UnmapSeconds
}

// scrapeStore reads the store counters from the server's Prometheus text
// exposition.
func scrapeStore(addr string) (storeCounters, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return storeCounters{}, err
	}
	defer resp.Body.Close()
	var g storeCounters
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, _ := strings.Cut(sc.Text(), " ")
		n, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "careplan_store_commit_batch_ops_count":
			g.Groups = n
		case "careplan_store_commit_batch_ops_sum":
			g.Ops = n
		case "careplan_store_unmaps_total":
			g.Unmaps = n
		case "careplan_store_unmap_seconds_total":
			g.UnmapSeconds = n
		}
	}
	return g, sc.Err()
}

// startProc runs bin with args (which must make it listen on addr), sends its
// stdout and stderr to logPath, and waits until it reports SERVING.
func startProc(ctx context.Context, name, bin string, args []string, addr, logPath string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a Ctrl-C reaches only the bench, which then
	// stops the server itself; and killed with the bench, so a crashed run
	// leaves no server behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{name: name, cmd: cmd, addr: addr, exited: make(chan struct{})}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	if err := waitServing(ctx, addr, p.exited); err != nil {
		_ = cmd.Process.Kill()
		<-p.exited
		return nil, fmt.Errorf("%s did not start: %w (log: %s)\n%s", name, err, logPath, tail(logPath, 20))
	}
	p.startUp = time.Since(start)
	return p, nil
}

func (p *proc) Addr() string           { return p.addr }
func (p *proc) StartUp() time.Duration { return p.startUp }
func (p *proc) Mem() (memInfo, error)  { return readMem(p.cmd.Process.Pid) }
func (p *proc) CPU() (time.Duration, bool) {
	d, err := readCPU(p.cmd.Process.Pid)
	return d, err == nil
}

// Stop sends SIGTERM and requires exit status 0 within stopTimeout, which is
// what the server promises (drain, close the store, exit 0).
func (p *proc) Stop() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited before it was stopped: %v", p.name, p.waitErr)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.name, stopTimeout)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("%s exited with status %d after SIGTERM", p.name, code)
	}
	return nil
}

// waitServing polls the health service on addr until it reports SERVING,
// the process exits, or startTimeout passes.
func waitServing(ctx context.Context, addr string, exited <-chan struct{}) error {
	// grpc's default reconnect backoff starts at one second, which would
	// be measured as start-up; retry every few milliseconds instead.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Millisecond, Multiplier: 1.5, MaxDelay: 10 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(startTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{Service: healthService})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case <-exited:
			return errors.New("process exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not SERVING after %v (last error: %v)", startTimeout, err)
		}
	}
}

// inProc is the careplan server inside the bench process, for profiling: the
// same store, verifier and server.New as the binary's --dev mode.
type inProc struct {
	srv     *server.Server
	st      *boltstore.Store
	logf    *os.File
	addr    string
	startUp time.Duration
	served  chan error
}

func startInProc(ctx context.Context, dataPath, logPath string) (*inProc, error) {
	start := time.Now()
	signer, err := devmode.Signer(dataPath)
	if err != nil {
		return nil, err
	}
	jwks, err := signer.JWKS()
	if err != nil {
		return nil, err
	}
	v, err := auth.NewVerifier(auth.Config{Issuers: []auth.IssuerConfig{{Issuer: devmode.Issuer, Audience: devmode.Audience, JWKS: jwks}}})
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	st, err := boltstore.Open(dataPath, boltstore.Options{})
	if err != nil {
		logf.Close()
		return nil, err
	}
	// Same logger as the binary: JSON at INFO, one line per call.
	srv, err := server.New(server.Config{Store: st, Verifier: v, Logger: slog.New(slog.NewJSONHandler(logf, nil))})
	if err != nil {
		st.Close()
		logf.Close()
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		logf.Close()
		return nil, err
	}
	p := &inProc{srv: srv, st: st, logf: logf, addr: lis.Addr().String(), served: make(chan error, 1)}
	go func() { p.served <- srv.Serve(lis) }()
	if err := waitServing(ctx, p.addr, nil); err != nil {
		_ = p.Stop()
		return nil, err
	}
	p.startUp = time.Since(start)
	return p, nil
}

func (p *inProc) Addr() string           { return p.addr }
func (p *inProc) StartUp() time.Duration { return p.startUp }
func (p *inProc) Mem() (memInfo, error)  { return readMem(os.Getpid()) }

// CPU is not told: the bench process also runs the clients.
func (p *inProc) CPU() (time.Duration, bool) { return 0, false }

func (p *inProc) Stop() error {
	p.srv.Shutdown(15 * time.Second)
	err := p.st.Close()
	if serr := <-p.served; serr != nil && !errors.Is(serr, grpc.ErrServerStopped) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, p.logf.Close())
}

// memInfo is a process's memory from /proc/<pid>/status, in bytes. RSS
// counts the bbolt file pages the process has touched through its mmap
// (RssFile) as well as its heap (RssAnon); both are reported.
type memInfo struct {
	RSS, Peak, Anon, File int64
}

func readMem(pid int) (memInfo, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	defer f.Close()
	var m memInfo
	fields := map[string]*int64{"VmRSS:": &m.RSS, "VmHWM:": &m.Peak, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.Fields(sc.Text())
		if len(parts) == 3 && parts[2] == "kB" && fields[parts[0]] != nil {
			kb, err := strconv.ParseInt(parts[1], 10, 64)
			if err != nil {
				return memInfo{}, fmt.Errorf("parse %s: %w", parts[0], err)
			}
			*fields[parts[0]] = kb << 10
		}
	}
	return m, sc.Err()
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// readCPU returns utime+stime from /proc/<pid>/stat, which counts every
// thread of the process.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields follow the command name, which is in parentheses and may hold
	// spaces; utime and stime are the 14th and 15th fields of the line.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// readIdle returns the machine's idle and total CPU time so far, from the
// first line of /proc/stat, in clock ticks summed over every CPU.
func readIdle() (idle, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("unexpected /proc/stat format")
	}
	for i, s := range f[1:] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		total += n
		if i == 3 || i == 4 { // idle and iowait
			idle += n
		}
	}
	return idle, total, nil
}

// freeLoopbackAddr returns a loopback address with a port that was free a
// moment ago, for a child process to listen on.
func freeLoopbackAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer lis.Close()
	return lis.Addr().String(), nil
}

// tail returns the last n lines of a file, for start-up failures.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
