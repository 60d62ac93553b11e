package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

const (
	// plansPerWriter: each writer owns this many plans and writes them in
	// turn, so a cycle exercises creates as well as updates.
	plansPerWriter = 2
	// callTimeout bounds one RPC against a stuck server; a call that times
	// out counts as unknown, like one cut by the kill.
	callTimeout = 10 * time.Second
	// throttlePause is the wait after a RESOURCE_EXHAUSTED (rate limit).
	throttlePause = 50 * time.Millisecond
)

// write identifies one write by the unique what_matters marker it stored.
// version is 0 while the outcome is unknown.
type write struct {
	nhs     string
	version int64
	marker  string
}

// plan is what a writer knows of one of its plans.
type plan struct {
	nhs     string
	etag    string // "" until the plan exists
	version int64
	// inDoubt holds the markers of writes whose outcome is unknown, all
	// based on version inDoubtBase. One of them can land after the writer
	// has re-read the plan (a cancelled call's commit may already be under
	// way), so a conflict on the next write is expected once, if a re-read
	// then shows one of them at inDoubtBase+1.
	inDoubt     []string
	inDoubtBase int64
}

// writer owns its plans outright: no other writer touches them, so every
// etag it holds is current unless one of its own writes has an unknown
// outcome. Its state carries over from cycle to cycle.
type writer struct {
	id    int
	nonce string // keeps markers and request ids unique to this run
	plans []*plan
	seq   int
}

func newWriter(id int, nonce string) *writer {
	w := &writer{id: id, nonce: nonce}
	for j := range plansPerWriter {
		w.plans = append(w.plans, &plan{nhs: fixture.NHSNumber(id*plansPerWriter + j)})
	}
	return w
}

// writerResult is what one writer saw in one cycle.
type writerResult struct {
	acked   []write // the server answered OK
	unknown []write // in flight when the server went away
	err     error   // a response no correct server gives
}

// run writes until ctx ends or the server stops answering. A write counts
// as acknowledged only once its response has arrived.
func (w *writer) run(ctx context.Context, cl *client.Client) (res writerResult) {
	// The previous cycle may have ended with a write in doubt: start from
	// what the server holds.
	for _, p := range w.plans {
		if err := w.resync(ctx, cl, p); err != nil {
			if !inDoubt(err) {
				res.err = err
			}
			return res
		}
	}
	for i := 0; ctx.Err() == nil; i++ {
		p := w.plans[i%len(w.plans)]
		w.seq++
		marker := fmt.Sprintf("crashtest-%s-w%d-%d", w.nonce, w.id, w.seq)
		stored, err := w.write(ctx, cl, p, marker)
		switch {
		case err == nil:
			if stored.GetVersion() != p.version+1 || stored.GetWhatMatters() != marker {
				res.err = fmt.Errorf("writer %d: %s: acknowledged version %d with %q after version %d; want the next version with %q",
					w.id, p.nhs, stored.GetVersion(), stored.GetWhatMatters(), p.version, marker)
				return res
			}
			p.etag, p.version, p.inDoubt = stored.GetEtag(), stored.GetVersion(), nil
			res.acked = append(res.acked, write{nhs: p.nhs, version: p.version, marker: marker})
		case len(p.inDoubt) > 0 && (errors.Is(err, client.ErrEtagMismatch) || errors.Is(err, client.ErrAlreadyExists)):
			if err := w.lateLanding(ctx, cl, p, err); err != nil {
				if !inDoubt(err) {
					res.err = err
				}
				return res
			}
		case status.Code(err) == codes.ResourceExhausted:
			// Rate limited before anything was written: try again shortly.
			select {
			case <-ctx.Done():
			case <-time.After(throttlePause):
			}
		case inDoubt(err):
			if p.inDoubtBase != p.version {
				p.inDoubt = nil // the earlier ones were settled
			}
			p.inDoubt, p.inDoubtBase = append(p.inDoubt, marker), p.version
			res.unknown = append(res.unknown, write{nhs: p.nhs, marker: marker})
			return res
		default:
			res.err = fmt.Errorf("writer %d: %s: %w", w.id, p.nhs, err)
			return res
		}
	}
	return res
}

// sync loads the plan's current etag and version from the server, and
// returns the what_matters marker it holds.
func (w *writer) sync(ctx context.Context, cl *client.Client, p *plan) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cur, err := cl.Get(ctx, p.nhs)
	switch {
	case errors.Is(err, client.ErrNotFound):
		p.etag, p.version = "", 0
		return "", nil
	case err != nil:
		return "", fmt.Errorf("writer %d: get %s: %w", w.id, p.nhs, err)
	}
	p.etag, p.version = cur.GetEtag(), cur.GetVersion()
	return cur.GetWhatMatters(), nil
}

// lateLanding explains a conflict after a write in doubt: it is fine only if
// the writer's last read still predated that write, and the plan now holds
// exactly that write, one version on.
func (w *writer) lateLanding(ctx context.Context, cl *client.Client, p *plan, conflict error) error {
	if p.version != p.inDoubtBase {
		return fmt.Errorf("writer %d: %s: %w at version %d, after the writes in doubt (%q, on version %d) were settled",
			w.id, p.nhs, conflict, p.version, p.inDoubt, p.inDoubtBase)
	}
	if err := w.resync(ctx, cl, p); err != nil {
		return err
	}
	if len(p.inDoubt) > 0 {
		return fmt.Errorf("writer %d: %s: %w, yet the plan is still at version %d", w.id, p.nhs, conflict, p.version)
	}
	return nil
}

// resync re-reads p and checks it: each writer owns its plans outright, so
// the plan must hold the version the writer last knew, or, when writes are
// in doubt, one of them one version on (it landed, and the others cannot).
// Anything else is a version no write of this writer explains.
func (w *writer) resync(ctx context.Context, cl *client.Client, p *plan) error {
	known := p.version
	cur, err := w.sync(ctx, cl, p)
	if err != nil {
		return err
	}
	switch {
	case p.version == known:
		return nil
	case len(p.inDoubt) > 0 && known == p.inDoubtBase && p.version == known+1 && slices.Contains(p.inDoubt, cur):
		p.inDoubt = nil
		return nil
	}
	return fmt.Errorf("writer %d: %s: the plan holds version %d with %q; want version %d, or %d with a write in doubt (%q)",
		w.id, p.nhs, p.version, cur, known, known+1, p.inDoubt)
}

// write creates the plan or updates its what_matters to marker, based on
// the etag the writer holds. The request id is the marker, so it is unique.
func (w *writer) write(ctx context.Context, cl *client.Client, p *plan, marker string) (*careplanv1.CarePlan, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if p.etag == "" {
		create := fixture.TrustPlan(p.nhs)
		create.WhatMatters = marker
		return cl.Create(ctx, create, marker)
	}
	update := &careplanv1.CarePlan{NhsNumber: p.nhs, Etag: p.etag, WhatMatters: marker}
	return cl.Update(ctx, update, []string{"what_matters"}, marker)
}

// inDoubt reports an error after which the write may or may not have been
// stored: the connection failed or the call was cut short.
func inDoubt(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded:
		return true
	}
	return false
}
