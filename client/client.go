// Package client is the Go library for the careplan service. It wraps the
// generated stubs with what every caller would otherwise write again: bearer
// tokens on each call, errors decoded from their google.rpc details into a
// typed *Error, paging, a read-modify-write helper that retries when
// another writer got there first (Modify), a change feed that resumes by
// itself after a restart or a slow-reader cut-off (Watch), the audit trail
// (AuditEvents), and a checked hot backup (Backup).
package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Client is a connection to a careplan server. It is safe for concurrent use.
type Client struct {
	conn  *grpc.ClientConn
	plans careplanv1.CarePlanServiceClient
	audit careplanv1.AuditServiceClient
	admin careplanv1.AdminServiceClient
}

// Dial returns a client for the server at addr. Like grpc.NewClient it does
// not connect until the first call, so an unreachable server shows up as an
// ErrUnavailable from that call rather than here. ctx is accepted for
// symmetry with the calls and future use (such as fetching a first token);
// it does not bound the connection's lifetime.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	transport := insecure.NewCredentials()
	if o.tls != nil {
		transport = credentials.NewTLS(o.tls)
	}
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(transport)}
	if o.token != nil {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(tokenCredentials(o.token)))
	}
	// Caller options go last so they can override the defaults above.
	dialOpts = append(dialOpts, o.dial...)
	conn, err := grpc.NewClient(addr, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	return &Client{
		conn:  conn,
		plans: careplanv1.NewCarePlanServiceClient(conn),
		audit: careplanv1.NewAuditServiceClient(conn),
		admin: careplanv1.NewAdminServiceClient(conn),
	}, nil
}

// Close releases the connection. Calls in flight fail with codes.Canceled.
func (c *Client) Close() error { return c.conn.Close() }

// CarePlans returns the raw CarePlanService stub, for calls this package does
// not wrap (ListCarePlans). Its errors are plain gRPC
// statuses: pass them through FromError to get an *Error.
func (c *Client) CarePlans() careplanv1.CarePlanServiceClient { return c.plans }

// Audit returns the raw AuditService stub. As with CarePlans, decode its
// errors with FromError.
func (c *Client) Audit() careplanv1.AuditServiceClient { return c.audit }
