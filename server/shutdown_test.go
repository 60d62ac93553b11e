package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestHealthNotServingOnShutdown: a health watcher (a load balancer) sees
// NOT_SERVING as soon as shutdown starts, before connections are drained.
func TestHealthNotServingOnShutdown(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("before shutdown: %v, %v", r, err)
	}
	done := make(chan struct{})
	go func() {
		e.Stop() // Shutdown: NOT_SERVING, drain (this watch holds it until the bound), stop
		close(done)
	}()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("during shutdown: %v, %v; want NOT_SERVING", r, err)
	}
	<-done
}
