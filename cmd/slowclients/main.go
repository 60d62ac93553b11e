//go:build linux

// Command slowclients measures what stuck and slow watchers cost the real
// server. It starts careplan-server --dev on loopback (a binary you give, or
// one it builds), writes large plans, opens stuck watchers (each reads one
// event, then nothing, on a connection with a 64 KiB window) and slow
// readers (one event a second), and prints the server's RSS, Go heap,
// goroutines and WatchCarePlans handlers still running, before, during and
// after. It stops by itself, and stops the server.
//
//	go run ./cmd/slowclients [-server BIN] [-stuck 300] [-slow 20] [-plan-bytes 24576] [-events 256]
//
// Against an older server, build that revision's ./cmd/careplan-server and
// pass it with -server.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/internal/devmode"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

type config struct {
	serverBin         string
	stuck, slow       int
	plans, events     int
	planBytes         int
	writeEvery        time.Duration
	slowEvery         time.Duration
	during, connected time.Duration
	settle            time.Duration
	memLimit          string
}

func main() {
	var c config
	flag.StringVar(&c.serverBin, "server", "", "careplan-server binary (default: build ./cmd/careplan-server)")
	flag.IntVar(&c.stuck, "stuck", 300, "stuck watchers: each reads one event, then nothing, and stays connected")
	flag.IntVar(&c.slow, "slow", 20, "slow readers: each reads one event every -slow-every")
	flag.IntVar(&c.plans, "plans", 8, "plans, all shared with the council that watches")
	flag.IntVar(&c.events, "events", 256, "versions written before the watchers start (the log they read from 0)")
	flag.IntVar(&c.planBytes, "plan-bytes", 24<<10, "approximate size of each plan version")
	flag.DurationVar(&c.writeEvery, "write-every", 500*time.Millisecond, "one more version this often while watchers are connected")
	flag.DurationVar(&c.slowEvery, "slow-every", time.Second, "how often a slow reader reads one event")
	flag.DurationVar(&c.during, "during", 5*time.Second, "first sample this long after the watchers started (within the send timeout)")
	flag.DurationVar(&c.connected, "connected", 20*time.Second, "second sample this long after the watchers started (past the send timeout), clients still connected")
	flag.DurationVar(&c.settle, "settle", 5*time.Second, "last sample this long after every client left")
	flag.StringVar(&c.memLimit, "live", "", "run the server with GOGC=off and this GOMEMLIMIT (e.g. 16MiB), so the heap in use follows the live heap (default: the server's own GC settings)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "slowclients:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp("", "slowclients-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := c.serverBin
	if bin == "" {
		bin = filepath.Join(dir, "careplan-server")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/careplan-server").CombinedOutput(); err != nil {
			return fmt.Errorf("build careplan-server: %v\n%s", err, out)
		}
	}
	data := filepath.Join(dir, "careplan.db")
	signer, err := devmode.Signer(data) // the server finds and trusts the same key
	if err != nil {
		return err
	}
	srv, err := startServer(ctx, bin, data, filepath.Join(dir, "server.log"), c.memLimit)
	if err != nil {
		return err
	}
	defer srv.stop()
	nhsTok, err := devmode.Token(signer, "nhs", time.Now())
	if err != nil {
		return err
	}
	councilTok, err := devmode.Token(signer, "council", time.Now())
	if err != nil {
		return err
	}
	w, err := newWriter(srv.addr, nhsTok, c)
	if err != nil {
		return err
	}
	defer w.conn.Close()
	fmt.Printf("slowclients: %d plans of about %d bytes, %d versions in the log; %d stuck watchers, %d slow readers\n",
		c.plans, c.planBytes, c.events, c.stuck, c.slow)
	for i := 0; i < c.events; i++ {
		if err := w.write(ctx); err != nil {
			return err
		}
	}
	var samples []sample
	take := func(name string) {
		s := srv.sample(name)
		samples = append(samples, s)
		fmt.Printf("  %-26s rss %6.0f MiB  heap %6.0f MiB  goroutines %6d  watch handlers %4d\n", name, mib(s.rss), mib(s.heap), s.goroutines, s.handlers)
	}
	time.Sleep(time.Second)
	take("before")

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	started := time.Now()
	ws, err := openWatchers(wctx, srv.addr, councilTok, c)
	if err != nil {
		return err
	}
	var writes sync.WaitGroup
	writes.Add(1)
	go func() {
		defer writes.Done()
		t := time.NewTicker(c.writeEvery)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				_ = w.write(wctx)
			}
		}
	}()
	sleepUntil(ctx, started.Add(c.during))
	take(fmt.Sprintf("during (+%v)", c.during))
	sleepUntil(ctx, started.Add(c.connected))
	take(fmt.Sprintf("still connected (+%v)", c.connected))
	ended := ws.drain(ctx)
	cancel()
	writes.Wait()
	ws.close()
	sleepUntil(ctx, time.Now().Add(c.settle))
	take(fmt.Sprintf("clients gone (+%v)", c.settle))
	fmt.Printf("stuck watchers, status once they read again: %s\n", ended)
	if err := ctx.Err(); err != nil {
		return err
	}
	printTable(samples)
	return srv.stop()
}

func mib(b float64) float64 { return b / (1 << 20) }

func sleepUntil(ctx context.Context, t time.Time) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Until(t)):
	}
}

func printTable(samples []sample) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tRSS MiB\theap in use MiB\tgoroutines\tWatch handlers running\t")
	for _, s := range samples {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%d\t%d\t\n", s.name, mib(s.rss), mib(s.heap), s.goroutines, s.handlers)
	}
	tw.Flush()
}

// server is careplan-server --dev on two loopback ports (gRPC, metrics).
type server struct {
	cmd         *exec.Cmd
	addr, maddr string
	exited      chan struct{}
	once        sync.Once
	err         error
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startServer(ctx context.Context, bin, data, logPath, memLimit string) (*server, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	maddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "--dev", "--addr", addr, "--data", data, "--metrics-addr", maddr,
		"--rate-limit", "0", "--log-level", "WARN")
	cmd.Stdout, cmd.Stderr = logf, logf
	if memLimit != "" {
		cmd.Env = append(os.Environ(), "GOGC=off", "GOMEMLIMIT="+memLimit)
	}
	// Killed with this process, so an interrupted run leaves no server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, addr: addr, maddr: maddr, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	for deadline := time.Now().Add(30 * time.Second); ; {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("server exited; see %s", logPath)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("server not SERVING: %v", err)
		}
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 30s).
func (s *server) stop() error {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
			if code := s.cmd.ProcessState.ExitCode(); code != 0 {
				s.err = fmt.Errorf("server exited with status %d", code)
			}
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
			s.err = errors.New("server did not exit within 30s of SIGTERM")
		}
	})
	return s.err
}

type sample struct {
	name                 string
	rss, heap            float64
	goroutines, handlers int
}

// sample reads the server's RSS from /proc and the rest from /metrics:
// WatchCarePlans handlers running are those started and not yet handled.
func (s *server) sample(name string) sample {
	out := sample{name: name}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				out.rss = kb * 1024
			}
		}
	}
	resp, err := http.Get("http://" + s.maddr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	var started, handled float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		v, _ := strconv.ParseFloat(line[i+1:], 64)
		name := line[:i]
		watch := strings.Contains(name, `grpc_method="WatchCarePlans"`)
		switch {
		case name == "go_goroutines":
			out.goroutines = int(v)
		case name == "go_memstats_heap_inuse_bytes":
			out.heap = v
		case watch && strings.HasPrefix(name, "grpc_server_started_total{"):
			started += v
		case watch && strings.HasPrefix(name, "grpc_server_handled_total{"):
			handled += v
		}
	}
	out.handlers = int(started - handled)
	return out
}

// writer keeps the plans, shared with the council, and writes versions
// round robin.
type writer struct {
	conn   *grpc.ClientConn
	plans  careplanv1.CarePlanServiceClient
	tok    string
	cur    []*careplanv1.CarePlan
	next   int
	filler string
}

func newWriter(addr, tok string, c config) (*writer, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	w := &writer{conn: conn, plans: careplanv1.NewCarePlanServiceClient(conn), tok: tok}
	for i := 0; i < c.plans; i++ {
		p := fixture.TrustPlan(fixture.NHSNumber(i))
		// Goal descriptions carry the size: free text is at most 10,000
		// characters a field.
		for g := 0; g < c.planBytes/10000+1; g++ {
			n := min(10000, c.planBytes-g*10000)
			if n <= 0 {
				break
			}
			p.Goals = append(p.Goals, &careplanv1.Goal{Id: fmt.Sprintf("g-pad-%d", g), Description: strings.Repeat("x", n),
				Status: careplanv1.Goal_STATUS_ACTIVE, Owner: fixture.Trust()})
		}
		out, err := w.plans.CreateCarePlan(w.ctx(context.Background()), &careplanv1.CreateCarePlanRequest{CarePlan: p})
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("create plan: %w", err)
		}
		w.cur = append(w.cur, out)
	}
	return w, nil
}

func (w *writer) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+w.tok)
}

func (w *writer) write(ctx context.Context) error {
	i := w.next % len(w.cur)
	w.next++
	cur := w.cur[i]
	next := &careplanv1.CarePlan{NhsNumber: cur.GetNhsNumber(), Etag: cur.GetEtag(), WhatMatters: "version " + strconv.Itoa(w.next)}
	out, err := w.plans.UpdateCarePlan(w.ctx(ctx), &careplanv1.UpdateCarePlanRequest{CarePlan: next})
	if err != nil {
		return fmt.Errorf("update plan: %w", err)
	}
	w.cur[i] = out
	return nil
}

// watchers are the stuck watchers and slow readers, each on its own
// connection with a 64 KiB window (the smallest grpc allows), as an
// attacker would open them.
type watchers struct {
	conns []*grpc.ClientConn
	stuck []careplanv1.CarePlanService_WatchCarePlansClient
	slow  sync.WaitGroup
}

func openWatchers(ctx context.Context, addr, tok string, c config) (*watchers, error) {
	ws := &watchers{}
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	open := func() (careplanv1.CarePlanService_WatchCarePlansClient, error) {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		if err != nil {
			return nil, err
		}
		ws.conns = append(ws.conns, conn)
		stream, err := careplanv1.NewCarePlanServiceClient(conn).WatchCarePlans(ctx, &careplanv1.WatchCarePlansRequest{})
		if err != nil {
			return nil, err
		}
		if _, err := stream.Recv(); err != nil {
			return nil, fmt.Errorf("first event: %w", err)
		}
		return stream, nil
	}
	for i := 0; i < c.stuck; i++ {
		stream, err := open()
		if err != nil {
			ws.close()
			return nil, err
		}
		ws.stuck = append(ws.stuck, stream)
	}
	for i := 0; i < c.slow; i++ {
		stream, err := open()
		if err != nil {
			ws.close()
			return nil, err
		}
		ws.slow.Add(1)
		go func() {
			defer ws.slow.Done()
			t := time.NewTicker(c.slowEvery)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if _, err := stream.Recv(); err != nil {
						return
					}
				}
			}
		}()
	}
	return ws, nil
}

// drain reads every stuck watcher again, for up to two seconds, and reports
// how their streams ended: cut off by the server, or still open.
func (ws *watchers) drain(ctx context.Context) string {
	ends := make(chan string, len(ws.stuck))
	for _, stream := range ws.stuck {
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					ends <- describe(err)
					return
				}
			}
		}()
	}
	counts := map[string]int{}
	timeout := time.After(2 * time.Second)
	for n := 0; n < len(ws.stuck); n++ {
		select {
		case end := <-ends:
			counts[end]++
			continue
		case <-timeout:
		case <-ctx.Done():
		}
		counts["still open after 2s of reading"] = len(ws.stuck) - n
		break
	}
	var parts []string
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, k))
	}
	return strings.Join(parts, ", ")
}

func describe(err error) string {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code().String() + " " + info.GetReason()
		}
	}
	if st.Code() == codes.OK {
		return "ended"
	}
	return st.Code().String()
}

func (ws *watchers) close() {
	for _, c := range ws.conns {
		_ = c.Close()
	}
	ws.slow.Wait()
}
