package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/internal/testpki"
)

func healthCheck(addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestTLS(t *testing.T) {
	p := testpki.New(t)
	addr := startServer(t, "--tls-cert", p.ServerCert, "--tls-key", p.ServerKey).addr
	if err := healthCheck(addr, credentials.NewTLS(&tls.Config{RootCAs: p.Pool})); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	if err := healthCheck(addr, insecure.NewCredentials()); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext client against a TLS server: %v, want UNAVAILABLE", err)
	}
	// The health subcommand (the container HEALTHCHECK) speaks TLS too.
	var out bytes.Buffer
	if err := health(context.Background(), []string{"--addr", addr, "--tls", "--tls-ca", p.CAFile}, &out, &out); err != nil || out.String() != "SERVING\n" {
		t.Fatalf("careplan-server health --tls: %v %q", err, out.String())
	}
}

func TestMutualTLS(t *testing.T) {
	p := testpki.New(t)
	addr := startServer(t, "--tls-cert", p.ServerCert, "--tls-key", p.ServerKey, "--client-ca", p.CAFile).addr
	withCert := credentials.NewTLS(&tls.Config{RootCAs: p.Pool, Certificates: []tls.Certificate{p.Client}})
	if err := healthCheck(addr, withCert); err != nil {
		t.Fatalf("client with a certificate from the trusted CA: %v", err)
	}
	if err := healthCheck(addr, credentials.NewTLS(&tls.Config{RootCAs: p.Pool})); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	var out bytes.Buffer
	if err := health(context.Background(), []string{"--addr", addr, "--tls", "--tls-ca", p.CAFile, "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey}, &out, &out); err != nil {
		t.Fatalf("health with a client certificate: %v", err)
	}
}

func TestTLSClientCAMustBeTrusted(t *testing.T) {
	p := testpki.New(t)
	// The server trusts only another CA: our client certificate is refused.
	addr := startServer(t, "--tls-cert", p.ServerCert, "--tls-key", p.ServerKey, "--client-ca", p.OtherCA).addr
	withCert := credentials.NewTLS(&tls.Config{RootCAs: p.Pool, Certificates: []tls.Certificate{p.Client}})
	if err := healthCheck(addr, withCert); err == nil {
		t.Fatal("a client certificate from an untrusted CA was accepted")
	}
}
