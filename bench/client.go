//go:build linux

package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// callTimeout bounds every call, so no operation can hang a phase.
const callTimeout = 10 * time.Second

// client is the one client used against every server (careplan and bare):
// a few connections over loopback, shared round-robin by the callers.
type client struct {
	conns []*grpc.ClientConn
	apis  []careplanv1.CarePlanServiceClient
}

// dial opens conns connections spread evenly over addrs (at least one to
// each), interleaved so that consecutive callers reach different servers:
// with two replicas, half the callers use each.
func dial(conns int, addrs ...string) (*client, error) {
	c := &client{}
	for range max(1, conns/len(addrs)) {
		for _, addr := range addrs {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				c.Close()
				return nil, err
			}
			c.conns = append(c.conns, conn)
			c.apis = append(c.apis, careplanv1.NewCarePlanServiceClient(conn))
		}
	}
	return c, nil
}

// api returns the connection a caller uses.
func (c *client) api(caller int) careplanv1.CarePlanServiceClient {
	return c.apis[caller%len(c.apis)]
}

func (c *client) Close() {
	for _, conn := range c.conns {
		_ = conn.Close()
	}
}

// withToken bounds a call and attaches the bearer token, as a real client
// would on every call (the bare server ignores it; it still travels).
func withToken(ctx context.Context, token string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), cancel
}

// getOp reads the plans round-robin. Its cursor carries on across warm-up
// and slices, so later slices do not re-read plans an earlier one warmed.
func getOp(c *client, token string, nhs []string) opFunc {
	var next atomic.Int64
	return func(ctx context.Context, caller int, _ int64) error {
		ctx, cancel := withToken(ctx, token)
		defer cancel()
		i := (next.Add(1) - 1) % int64(len(nhs))
		_, err := c.api(caller).GetCarePlan(ctx, &careplanv1.GetCarePlanRequest{NhsNumber: nhs[i]})
		return err
	}
}

// listOp pages through the caller organisation's plans, 25 a page, each
// caller following its own page tokens and starting over at the end.
func listOp(c *client, token string, callers int) opFunc {
	pageTokens := make([]string, callers)
	return func(ctx context.Context, caller int, _ int64) error {
		ctx, cancel := withToken(ctx, token)
		defer cancel()
		resp, err := c.api(caller).ListCarePlans(ctx, &careplanv1.ListCarePlansRequest{PageSize: 25, PageToken: pageTokens[caller]})
		if err != nil {
			return err
		}
		if len(resp.GetCarePlans()) == 0 && resp.GetNextPageToken() == "" {
			return fmt.Errorf("empty list page")
		}
		pageTokens[caller] = resp.GetNextPageToken()
		return nil
	}
}

// ack is a write the server acknowledged.
type ack struct {
	nhs, etag string
	version   int64
}

// updatesPerPlan is how many updates a writer makes to a plan before it
// creates the next one: one create in ten, like a service where plans are
// revised far more often than they are opened.
const updatesPerPlan = 9

// writers drives CreateCarePlan and UpdateCarePlan, each caller on plans of
// its own (so etags never go stale by another caller's hand), and keeps
// every acknowledged (nhs, version, etag) to check afterwards.
type writers struct {
	c       *client
	token   string
	tmpl    *careplanv1.CarePlan // the ~4 KB plan every create sends
	nextNHS *atomic.Int64        // fixture index of the next new plan, shared by every phase
	edits   atomic.Int64         // makes every update's text new
	state   []writerState
	acks    [][]ack
}

type writerState struct {
	nhs, etag string
	updates   int
}

func newWriters(c *client, token string, planBytes int, nextNHS *atomic.Int64, callers int) *writers {
	return &writers{
		c: c, token: token, nextNHS: nextNHS,
		tmpl:  benchPlan(fixture.NHSNumber(0), planBytes, true),
		state: make([]writerState, callers),
		acks:  make([][]ack, callers),
	}
}

func (w *writers) op(ctx context.Context, caller int, _ int64) error {
	ctx, cancel := withToken(ctx, w.token)
	defer cancel()
	s := &w.state[caller]
	api := w.c.api(caller)
	var (
		plan *careplanv1.CarePlan
		err  error
	)
	if s.nhs == "" || s.updates >= updatesPerPlan {
		p := proto.CloneOf(w.tmpl)
		p.NhsNumber = fixture.NHSNumber(int(w.nextNHS.Add(1) - 1))
		*s = writerState{}
		plan, err = api.CreateCarePlan(ctx, &careplanv1.CreateCarePlanRequest{CarePlan: p})
	} else {
		// A new what_matters of the same length: a real change (so a
		// version is stored) of the same size.
		num := strconv.FormatInt(w.edits.Add(1), 10) + " "
		text := num + w.tmpl.GetWhatMatters()[len(num):]
		plan, err = api.UpdateCarePlan(ctx, &careplanv1.UpdateCarePlanRequest{
			CarePlan:   &careplanv1.CarePlan{NhsNumber: s.nhs, Etag: s.etag, WhatMatters: text},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"what_matters"}},
		})
		s.updates++
	}
	if err != nil {
		*s = writerState{} // start afresh on a new plan
		return err
	}
	s.nhs, s.etag = plan.GetNhsNumber(), plan.GetEtag()
	w.acks[caller] = append(w.acks[caller], ack{nhs: plan.GetNhsNumber(), etag: plan.GetEtag(), version: plan.GetVersion()})
	return nil
}

// all returns every acknowledged write, by plan: version → etag.
func (w *writers) all() map[string]map[int64]string {
	out := map[string]map[int64]string{}
	for _, acks := range w.acks {
		for _, a := range acks {
			if out[a.nhs] == nil {
				out[a.nhs] = map[int64]string{}
			}
			out[a.nhs][a.version] = a.etag
		}
	}
	return out
}

// verifyAcks reads every version of every plan written back through the
// server and counts the acknowledged writes found with the etag the client
// was given. It runs through the same driver, bounded by count and time.
func verifyAcks(ctx context.Context, c *client, token string, acked map[string]map[int64]string, callers int) (found, total int64, err error) {
	plans := make([]string, 0, len(acked))
	for nhs, versions := range acked {
		plans = append(plans, nhs)
		total += int64(len(versions))
	}
	var (
		n     atomic.Int64
		mu    sync.Mutex
		first error
	)
	r := drive(ctx, phase{Name: "verify", Callers: callers, Duration: 10 * time.Minute, MaxOps: int64(len(plans))},
		func(ctx context.Context, caller int, i int64) error {
			want := acked[plans[i]]
			got := 0
			var page string
			for {
				cctx, cancel := withToken(ctx, token)
				resp, err := c.api(caller).ListCarePlanVersions(cctx, &careplanv1.ListCarePlanVersionsRequest{NhsNumber: plans[i], PageSize: 100, PageToken: page})
				cancel()
				if err != nil {
					return err
				}
				for _, v := range resp.GetVersions() {
					if etag, ok := want[v.GetVersion()]; ok && etag == v.GetEtag() {
						got++
					}
				}
				if page = resp.GetNextPageToken(); page == "" {
					break
				}
			}
			n.Add(int64(got))
			if got != len(want) {
				mu.Lock()
				first = fmt.Errorf("plan %s: %d of %d acknowledged versions found", plans[i], got, len(want))
				mu.Unlock()
			}
			return nil
		})
	if r.Errors > 0 {
		return n.Load(), total, fmt.Errorf("verify: %d plans unreadable, first: %v", r.Errors, r.FirstErr)
	}
	if r.Ops != int64(len(plans)) {
		return n.Load(), total, fmt.Errorf("verify: only %d of %d plans checked in time", r.Ops, len(plans))
	}
	return n.Load(), total, first
}
