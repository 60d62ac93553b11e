package client_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/server"
)

// start runs the real server for the test, with a wiretap on it.
func start(t *testing.T, opts ...testserver.Option) (*testserver.Server, *wiretap) {
	t.Helper()
	w := &wiretap{}
	opts = append(opts, func(c *server.Config) {
		c.ExtraOptions = append(c.ExtraOptions, grpc.StatsHandler(w))
	})
	return testserver.Start(t, opts...), w
}

// dial connects to addr with opts and closes the client when the test ends.
func dial(t *testing.T, addr string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.Dial(t.Context(), addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// setWhatMatters writes a new version of the plan as the trust, whatever
// its current etag, and returns it.
func setWhatMatters(t *testing.T, c *client.Client, nhs, text string) *careplanv1.CarePlan {
	t.Helper()
	cur, err := c.Get(t.Context(), nhs)
	if err != nil {
		t.Fatal(err)
	}
	next, err := c.Update(t.Context(), &careplanv1.CarePlan{NhsNumber: nhs, Etag: cur.GetEtag(), WhatMatters: text}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return next
}

// wiretap is a stats handler on the real server that records each call as
// the server received it: method, headers and request messages. It lets a
// test check what went over the wire (a token, a mask, a request id) that
// the server's answer alone would not show.
type wiretap struct {
	mu    sync.Mutex
	calls []*call
}

// call is one RPC as the server received it.
type call struct {
	method   string
	md       metadata.MD
	requests []proto.Message
}

type callKey struct{}

// callsTo returns a copy of every call to method (the last part of the full
// name, e.g. "UpdateCarePlan"), oldest first.
func (w *wiretap) callsTo(method string) []call {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []call
	for _, c := range w.calls {
		if strings.HasSuffix(c.method, "/"+method) {
			out = append(out, call{c.method, c.md.Copy(), slices.Clone(c.requests)})
		}
	}
	return out
}

// requestsTo returns the request messages of every call to method.
func requestsTo[T proto.Message](w *wiretap, method string) []T {
	var out []T
	for _, c := range w.callsTo(method) {
		for _, r := range c.requests {
			out = append(out, r.(T))
		}
	}
	return out
}

func (w *wiretap) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	c := &call{method: info.FullMethodName}
	w.mu.Lock()
	w.calls = append(w.calls, c)
	w.mu.Unlock()
	return context.WithValue(ctx, callKey{}, c)
}

func (w *wiretap) HandleRPC(ctx context.Context, s stats.RPCStats) {
	c, _ := ctx.Value(callKey{}).(*call)
	if c == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch s := s.(type) {
	case *stats.InHeader:
		c.md = s.Header.Copy()
	case *stats.InPayload:
		if m, ok := s.Payload.(proto.Message); ok {
			c.requests = append(c.requests, proto.Clone(m)) // the server may reuse it
		}
	}
}

func (*wiretap) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (*wiretap) HandleConn(context.Context, stats.ConnStats)                       {}
