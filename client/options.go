package client

import (
	"context"
	"crypto/tls"

	"google.golang.org/grpc"
)

// Option configures Dial.
type Option func(*options)

type options struct {
	token tokenSource
	tls   *tls.Config
	dial  []grpc.DialOption
}

// tokenSource returns the bearer token (a JWT, without the "Bearer " prefix)
// to send with a call.
type tokenSource = func(ctx context.Context) (string, error)

// WithToken sends the fixed bearer token with every call.
func WithToken(token string) Option {
	return WithTokenSource(func(context.Context) (string, error) { return token, nil })
}

// WithTokenSource sends the token that source returns with every call.
// source is called once per RPC, so one that refreshes a short-lived token
// before it expires keeps a long-lived Client working. An error from source
// fails the call with codes.Unauthenticated before anything is sent.
func WithTokenSource(source func(ctx context.Context) (string, error)) Option {
	return func(o *options) { o.token = source }
}

// WithTLS connects over TLS with cfg (add a client certificate to cfg for
// mutual TLS). Without it the connection is plaintext, which is only fit for
// loopback and dev mode: the bearer token then crosses the wire in clear.
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) { o.tls = cfg }
}

// WithDialOptions appends raw gRPC dial options, for interceptors, keepalive
// and the like. They are applied after this package's own, so a transport
// credentials option here replaces the one chosen by WithTLS.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// tokenCredentials puts a token source's token in the authorization metadata
// of each call.
type tokenCredentials tokenSource

// GetRequestMetadata implements credentials.PerRPCCredentials. An empty
// token sends no header, so the server answers MISSING_TOKEN rather than
// INVALID_TOKEN.
func (t tokenCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	token, err := t(ctx)
	if err != nil || token == "" {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. It
// reports false so that tokens also work on the plaintext connections used
// on loopback (dev mode, tests, a sidecar). That means gRPC will not stop a
// token going out in clear: use WithTLS for anything that leaves the host.
func (tokenCredentials) RequireTransportSecurity() bool { return false }
