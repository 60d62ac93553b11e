package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// syncBuffer lets a test read what run prints while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is the binary's run() serving in --dev mode on a loopback port.
type running struct {
	t      *testing.T
	addr   string
	data   string
	stdout syncBuffer
	stderr syncBuffer
	cancel context.CancelFunc
	done   chan error
	exit   error
	once   sync.Once
}

// startServer runs `careplan-server --dev` with extra args until the test
// ends (or stop is called).
func startServer(t *testing.T, args ...string) *running {
	t.Helper()
	return startRun(t, append([]string{"--dev"}, args...)...)
}

// startRun runs careplan-server on a loopback port and a new data file with
// args.
func startRun(t *testing.T, args ...string) *running {
	t.Helper()
	r := &running{t: t, data: filepath.Join(t.TempDir(), "careplan.db"), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	ready := make(chan string, 1)
	// A later --data in args wins (the flag package keeps the last value).
	args = append([]string{"--addr", "127.0.0.1:0", "--data", r.data}, args...)
	for i, a := range args {
		if a == "--data" && i+1 < len(args) {
			r.data = args[i+1]
		}
	}
	go func() { r.done <- run(ctx, args, &r.stdout, &r.stderr, ready) }()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("server exit: %v", err)
		}
	})
	select {
	case r.addr = <-ready:
	case err := <-r.done:
		t.Fatalf("server did not start: %v\n%s", err, r.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start in 10s")
	}
	return r
}

// stop cancels run (as SIGTERM does) and returns what it returned.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.exit = <-r.done:
		case <-time.After(20 * time.Second):
			r.exit = context.DeadlineExceeded
		}
	})
	return r.exit
}

// token is the dev token the banner printed for "NHS" or "COUNCIL".
func (r *running) token(who string) string {
	m := regexp.MustCompile(`export ` + who + `_TOKEN=(\S+)`).FindStringSubmatch(r.stdout.String())
	if m == nil {
		r.t.Fatalf("banner has no %s token:\n%s", who, r.stdout.String())
	}
	return m[1]
}

// plans returns a client over a plaintext connection closed at cleanup.
func (r *running) plans() careplanv1.CarePlanServiceClient {
	conn, err := grpc.NewClient(r.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close() })
	return careplanv1.NewCarePlanServiceClient(conn)
}

// as returns a context calling with who's dev token and metadata pairs.
func (r *running) as(who string, kv ...string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), append([]string{"authorization", "Bearer " + r.token(who)}, kv...)...)
}
