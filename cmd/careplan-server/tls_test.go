package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	dir                            string
	caFile, serverCert, serverKey  string
	clientCert, clientKey, otherCA string
	pool                           *x509.CertPool
	client                         tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	caKey, caCert, caDER := makeCA(t, "careplan test CA")
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", caDER)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(caCert)
	p.serverCert, p.serverKey, _ = p.leaf(t, "server", caKey, caCert, x509.ExtKeyUsageServerAuth)
	var clientPair tls.Certificate
	p.clientCert, p.clientKey, clientPair = p.leaf(t, "client", caKey, caCert, x509.ExtKeyUsageClientAuth)
	p.client = clientPair
	_, _, otherDER := makeCA(t, "some other CA")
	p.otherCA = p.write(t, "other-ca.pem", "CERTIFICATE", otherDER)
	return p
}

func makeCA(t *testing.T, name string) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return key, cert, der
}

func (p *testPKI) leaf(t *testing.T, name string, caKey *ecdsa.PrivateKey, ca *x509.Certificate, usage x509.ExtKeyUsage) (string, string, tls.Certificate) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile := p.write(t, name+".pem", "CERTIFICATE", der)
	keyFile := p.write(t, name+"-key.pem", "PRIVATE KEY", keyDER)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

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
	p := newPKI(t)
	addr := startServer(t, "--tls-cert", p.serverCert, "--tls-key", p.serverKey).addr
	if err := healthCheck(addr, credentials.NewTLS(&tls.Config{RootCAs: p.pool})); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	if err := healthCheck(addr, insecure.NewCredentials()); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext client against a TLS server: %v, want UNAVAILABLE", err)
	}
	// The health subcommand (the container HEALTHCHECK) speaks TLS too.
	var out bytes.Buffer
	if err := health(context.Background(), []string{"--addr", addr, "--tls", "--tls-ca", p.caFile}, &out, &out); err != nil || out.String() != "SERVING\n" {
		t.Fatalf("careplan-server health --tls: %v %q", err, out.String())
	}
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	addr := startServer(t, "--tls-cert", p.serverCert, "--tls-key", p.serverKey, "--client-ca", p.caFile).addr
	withCert := credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}})
	if err := healthCheck(addr, withCert); err != nil {
		t.Fatalf("client with a certificate from the trusted CA: %v", err)
	}
	if err := healthCheck(addr, credentials.NewTLS(&tls.Config{RootCAs: p.pool})); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	var out bytes.Buffer
	if err := health(context.Background(), []string{"--addr", addr, "--tls", "--tls-ca", p.caFile, "--tls-cert", p.clientCert, "--tls-key", p.clientKey}, &out, &out); err != nil {
		t.Fatalf("health with a client certificate: %v", err)
	}
}

func TestTLSClientCAMustBeTrusted(t *testing.T) {
	p := newPKI(t)
	// The server trusts only another CA: our client certificate is refused.
	addr := startServer(t, "--tls-cert", p.serverCert, "--tls-key", p.serverKey, "--client-ca", p.otherCA).addr
	withCert := credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}})
	if err := healthCheck(addr, withCert); err == nil {
		t.Fatal("a client certificate from an untrusted CA was accepted")
	}
}
