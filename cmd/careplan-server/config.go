package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/devmode"
	"github.com/careplan/careplan/server"
	"github.com/careplan/careplan/trustconfig"
)

type config struct {
	addr, data, metricsAddr   string
	storeURL                  string
	jwks, issuer, audience    string
	trustFile                 string
	trustFlags                trustconfig.Flags
	tlsCert, tlsKey, clientCA string
	dev                       bool
	maxRequestBytes           int
	maxConcurrentStreams      uint
	rateLimit                 float64
	rateBurst                 int
	maxMappedMB               int
	mapAheadMB                int
	shutdownTimeout           time.Duration
	requestRetention          time.Duration
	logLevel                  slog.Level
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("careplan-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:50051", "listen address")
	fs.StringVar(&c.data, "data", "./data/careplan.db", "bbolt data file")
	fs.StringVar(&c.storeURL, "store", "", "postgres:// URL: keep plans in PostgreSQL (stateless replicas); --data then holds only dev keys")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on this address (off when empty)")
	fs.StringVar(&c.jwks, "jwks", "", "trusted JWK Set: a file, or an https URL (refreshed); with --issuer")
	fs.StringVar(&c.issuer, "issuer", "", "trusted token issuer (iss); required with --jwks")
	fs.StringVar(&c.trustFile, "config", "", "YAML trust configuration: several issuers, claim and role mapping, allowed organisations")
	fs.StringVar(&c.audience, "audience", devmode.Audience, "required token audience (aud)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file (PEM); enables TLS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&c.clientCA, "client-ca", "", "CA bundle (PEM) for client certificates; enables mutual TLS")
	fs.BoolVar(&c.dev, "dev", false, "development mode: local signing key, loopback only, prints tokens")
	fs.IntVar(&c.maxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "largest request message accepted")
	fs.UintVar(&c.maxConcurrentStreams, "max-concurrent-streams", 1000, "calls in flight on one connection")
	fs.Float64Var(&c.rateLimit, "rate-limit", 500, "calls a second allowed to each caller (issuer and subject); 0 turns it off")
	fs.IntVar(&c.rateBurst, "rate-burst", 1000, "burst of calls allowed to each caller above --rate-limit")
	fs.IntVar(&c.maxMappedMB, "max-mapped-mb", 128, "MiB of file-backed memory (mostly the bbolt file's mapped pages) before the store unmaps them; they stay in the page cache; 0 for no bound")
	fs.IntVar(&c.mapAheadMB, "map-ahead-mb", 0, "MiB to map the bbolt file past its end at start, so writes that grow the file need not wait for a running backup; 0 for bbolt's own mapping")
	fs.DurationVar(&c.requestRetention, "request-retention", 7*24*time.Hour, "how long a request_id keeps retries of its write safe; older keys are forgotten, and a retry with one is a new write; 0 keeps them for ever")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long SIGTERM waits for in-flight calls")
	fs.TextVar(&c.logLevel, "log-level", slog.LevelInfo, "log level: DEBUG, INFO, WARN, ERROR")
	if err := fs.Parse(args); err != nil {
		return nil, errUsage
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	// Only flags given on the command line override the trust file.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "issuer":
			c.trustFlags.Issuer = c.issuer
		case "jwks":
			c.trustFlags.JWKS = c.jwks
		case "audience":
			c.trustFlags.Audience = c.audience
		}
	})
	if err := checkStoreFlag(c.storeURL); err != nil {
		return nil, err
	}
	if c.requestRetention < 0 {
		return nil, fmt.Errorf("%w: --request-retention must not be negative (0 keeps request keys for ever)", errUsage)
	}
	if c.dev {
		if err := requireLoopback(c.addr); err != nil {
			return nil, err
		}
	} else if c.trustFile == "" && (c.jwks == "" || c.issuer == "") {
		return nil, fmt.Errorf("%w: --jwks and --issuer (or --config) are required, or run with --dev", errUsage)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") || (c.clientCA != "" && c.tlsCert == "") {
		return nil, fmt.Errorf("%w: --tls-cert and --tls-key go together; --client-ca needs both", errUsage)
	}
	return c, nil
}

// requireLoopback keeps dev mode, whose tokens are printed to the terminal,
// off the network.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: --addr: %v", errUsage, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%w: --dev listens on loopback only; %q is not a loopback address", errUsage, host)
	}
	return nil
}

// verifier builds the token verifier from --config and the flags (flags
// win for the issuer they name; see trustconfig.File.ApplyFlags). In dev
// mode it also trusts the local dev key and returns a banner that prints
// ready-to-use tokens and a grpcurl example.
func (c *config) verifier(now time.Time, logger *slog.Logger) (*auth.Verifier, func(io.Writer, string), error) {
	f := &trustconfig.File{}
	if c.trustFile != "" {
		var err error
		if f, err = trustconfig.Load(c.trustFile); err != nil {
			return nil, nil, err
		}
	}
	if err := f.ApplyFlags(c.trustFlags); err != nil {
		return nil, nil, err
	}
	cfg, err := f.VerifierConfig()
	if err != nil {
		return nil, nil, err
	}
	cfg.Logger = logger
	var banner func(io.Writer, string)
	if c.dev {
		signer, err := devmode.Signer(c.data)
		if err != nil {
			return nil, nil, fmt.Errorf("dev signing key: %w", err)
		}
		jwks, err := signer.JWKS()
		if err != nil {
			return nil, nil, err
		}
		cfg.Issuers = append(cfg.Issuers, auth.IssuerConfig{Issuer: devmode.Issuer, Audience: c.audience, JWKS: jwks})
		banner = func(w io.Writer, addr string) { printDevBanner(w, signer, addr, c.tlsCert != "", now) }
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		return nil, nil, err
	}
	return v, banner, nil
}

func printDevBanner(w io.Writer, signer *auth.Signer, addr string, useTLS bool, now time.Time) {
	tokens := map[string]string{}
	for _, c := range devmode.Callers {
		t, err := devmode.Token(signer, c.Name, now)
		if err != nil {
			fmt.Fprintln(w, "cannot mint dev token:", err)
			return
		}
		tokens[c.Name] = t
	}
	plaintext := "-plaintext "
	if useTLS {
		plaintext = "-insecure "
	}
	fmt.Fprintf(w, `
careplan dev mode: listening on %[1]s (loopback only). Tokens valid for %[2]s.

NHS trust RXA (read, write, break-glass, audit:read, admin):
export NHS_TOKEN=%[3]s

Council C123 (read, write, audit:read):
export COUNCIL_TOKEN=%[4]s

Try it:
go run github.com/fullstorydev/grpcurl/cmd/grpcurl@%[5]s %[6]s-H "authorization: Bearer $NHS_TOKEN" -d '{"nhs_number": "9434765919"}' %[1]s careplan.v1.CarePlanService/GetCarePlan

`, addr, devmode.TokenLifetime, tokens["nhs"], tokens["council"], grpcurlVersion, plaintext)
}

// grpcurlVersion is the grpcurl the README and the banner run.
const grpcurlVersion = "v1.9.4"

func (c *config) transportCredentials() (credentials.TransportCredentials, error) {
	if c.tlsCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.clientCA != "" {
		pem, err := os.ReadFile(c.clientCA)
		if err != nil {
			return nil, fmt.Errorf("read --client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("--client-ca holds no PEM certificates")
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(tc), nil
}
