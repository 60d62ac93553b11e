package main

import (
	"crypto/tls"
	"strings"
	"testing"

	"google.golang.org/grpc/credentials"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/testpki"
	"github.com/careplan/careplan/internal/testserver"
	"github.com/careplan/careplan/server"
)

// TestTLSFlags runs the CLI against a server that requires mutual TLS.
func TestTLSFlags(t *testing.T) {
	p := testpki.New(t)
	s := testserver.Start(t, func(c *server.Config) {
		c.Creds = credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{p.Server}, ClientCAs: p.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
		})
	})
	mtls, err := client.TLSFiles{CA: p.CAFile, Cert: p.ClientCert, Key: p.ClientKey}.Config()
	if err != nil {
		t.Fatal(err)
	}
	nhs := testserver.CreatePlan(t, s.Client(t, testserver.TrustUser, client.WithTLS(mtls)), 1).GetNhsNumber()
	as(t, s, testserver.TrustUser)

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode string // "" for success
	}{
		{"mutual TLS by flags", nil, []string{"--tls-ca", p.CAFile, "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey}, ""},
		{"mutual TLS by environment", map[string]string{"CAREPLAN_TLS_CA": p.CAFile, "CAREPLAN_TLS_CERT": p.ClientCert, "CAREPLAN_TLS_KEY": p.ClientKey}, nil, ""},
		{"plaintext", nil, nil, "UNAVAILABLE"},
		{"no client certificate", nil, []string{"--tls-ca", p.CAFile}, "UNAVAILABLE"},
		{"server certificate from another CA", nil, []string{"--tls-ca", p.OtherCA, "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey}, "UNAVAILABLE"},
		{"system roots do not know the test CA", nil, []string{"--tls", "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey}, "UNAVAILABLE"},
		{"certificate without its key", nil, []string{"--tls-ca", p.CAFile, "--tls-cert", p.ClientCert}, "INVALID_ARGUMENT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			r := cli(t, s, "", append(tc.args, "get", nhs)...)
			if tc.wantCode == "" {
				if r.code != 0 || !strings.Contains(r.stdout, nhs) {
					t.Fatalf("exit %d, stderr %s", r.code, r.stderr)
				}
				return
			}
			if e := decodeError(t, r); r.code != 1 || e.Code != tc.wantCode {
				t.Fatalf("exit %d, error %+v; want exit 1 and %s", r.code, e, tc.wantCode)
			}
		})
	}
}
