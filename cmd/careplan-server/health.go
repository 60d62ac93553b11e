package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/careplan/careplan/client"
)

// health asks a running server's gRPC health service whether it is
// SERVING. It is the container HEALTHCHECK, so it needs no shell and no
// other binary in the image.
func health(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("careplan-server health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:50051", "server address")
	useTLS := fs.Bool("tls", false, "connect with TLS")
	ca := fs.String("tls-ca", "", "CA bundle (PEM) to verify the server; default the system roots")
	cert := fs.String("tls-cert", "", "client certificate (PEM), for a server that requires mutual TLS")
	key := fs.String("tls-key", "", "client key (PEM)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	creds := insecure.NewCredentials()
	if *useTLS {
		tc, err := client.TLSFiles{CA: *ca, Cert: *cert, Key: *key}.Config()
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	fmt.Fprintln(stdout, resp.GetStatus())
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("server is %v", resp.GetStatus())
	}
	return nil
}
