package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/careplan/careplan/store/boltstore"
)

// maxLostShown bounds the lost writes listed in an error.
const maxLostShown = 10

// errLost marks a run that lost acknowledged writes.
var errLost = errors.New("acknowledged writes lost")

// cycle runs one load → stop → tx.Check → restart → verify round and
// prints its line.
func (h *harness) cycle(ctx context.Context, n int, sum *summary) error {
	sig := sigkill
	if h.cfg.SigtermEvery > 0 && n%h.cfg.SigtermEvery == 0 {
		sig = sigterm
	}
	runFor := h.cfg.MinRun + time.Duration(h.rng.Int64N(int64(h.cfg.MaxRun-h.cfg.MinRun)+1))
	acked, unknown, reads, took, err := h.load(ctx, sig, runFor)
	h.acked = append(h.acked, acked...)
	h.reads += reads
	sum.Reads += reads
	sum.Acked += len(acked)
	sum.Unknown += len(unknown)
	sum.Cycles++
	if sig == sigterm {
		sum.SigTerms++
	} else {
		sum.SigKills++
	}
	if err != nil {
		return err
	}
	// The server is down: nothing else has the file open.
	if err := checkBolt(h.data); err != nil {
		sum.CheckFailed = true
		return fmt.Errorf("tx.Check after %s: %w", signalName(sig), err)
	}
	// Every answered call left an audit event, in the data file or in the
	// audit journal beside it; the chain must run unbroken through both.
	events, err := boltstore.VerifyAudit(h.data)
	if err != nil {
		return fmt.Errorf("audit chain after %s: %w", signalName(sig), err)
	}
	if want := int64(len(h.acked) + h.reads); events < want {
		sum.Lost += int(want - events)
		return fmt.Errorf("%w: %d audit events after %s, fewer than the %d acknowledged writes and answered reads", errLost, events, signalName(sig), want)
	}
	if err := h.restart(ctx); err != nil {
		return fmt.Errorf("restart after %s: %w", signalName(sig), err)
	}
	cl, err := h.dial(ctx)
	if err != nil {
		return err
	}
	defer cl.Close()
	v, err := verify(ctx, cl, h.acked, unknown, h.unknown)
	h.unknown = append(h.unknown, unknown...)
	sum.Lost += len(v.lost)
	sum.Landed += v.landed
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	how := fmt.Sprintf("%s after %v", signalName(sig), runFor.Round(time.Millisecond))
	if sig == sigterm {
		how += fmt.Sprintf(" (exit 0 in %v)", took.Round(time.Millisecond))
	}
	fmt.Fprintf(h.cfg.Out, "cycle %d/%d: %s: acknowledged %d (total %d), unknown %d (landed %d), lost %d, reads %d (total %d, %d audit events), tx.Check ok\n",
		n, h.cfg.Cycles, how, len(acked), len(h.acked), len(unknown), v.landed, len(v.lost), reads, h.reads, events)
	if len(v.lost) > 0 {
		shown := v.lost[:min(len(v.lost), maxLostShown)]
		return fmt.Errorf("%w: %d of %d after %s:\n  %s", errLost, len(v.lost), len(h.acked), signalName(sig), strings.Join(shown, "\n  "))
	}
	return nil
}

// load runs every writer against the server for runFor, then stops the
// server with sig while they are still writing. It returns the writes
// acknowledged before the stop and those left in doubt by it.
func (h *harness) load(ctx context.Context, sig syscall.Signal, runFor time.Duration) (acked, unknown []write, reads int, took time.Duration, err error) {
	cl, err := h.dial(ctx)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	defer cl.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]writerResult, len(h.writers))
	var wg sync.WaitGroup
	for i, w := range h.writers {
		wg.Go(func() { results[i] = w.run(wctx, cl) })
	}
	answered := make([]int, readers)
	for i := range readers {
		wg.Go(func() { answered[i] = readPlans(wctx, cl, i, len(h.writers)*plansPerWriter) })
	}
	select {
	case <-time.After(runFor):
	case <-h.srv.exited: // stop reports the early exit
	case <-ctx.Done():
	}
	took, err = h.stop(sig)
	// Every call still open fails now that the server is gone, so the
	// writers end promptly; cancelling covers one that is between calls.
	cancel()
	wg.Wait()
	var errs []error
	for _, r := range results {
		acked = append(acked, r.acked...)
		unknown = append(unknown, r.unknown...)
		errs = append(errs, r.err)
	}
	for _, n := range answered {
		reads += n
	}
	return acked, unknown, reads, took, errors.Join(append(errs, err, ctx.Err())...)
}

// stop sends sig to the running server and checks how it ended: killed by
// SIGKILL, or, after SIGTERM, exit status 0 within --shutdown-timeout plus
// shutdownMargin.
func (h *harness) stop(sig syscall.Signal) (time.Duration, error) {
	limit := killLimit
	if sig == sigterm {
		limit = h.cfg.ShutdownTimeout + shutdownMargin
	}
	state, took, err := h.srv.stop(sig, limit)
	if err != nil {
		return took, err
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	switch {
	case sig == sigterm && state.ExitCode() != 0:
		return took, fmt.Errorf("after SIGTERM the server ended with %v after %v; want exit status 0", state, took.Round(time.Millisecond))
	case sig == sigkill && !(ws.Signaled() && ws.Signal() == sigkill):
		return took, fmt.Errorf("server ended with %v, not by SIGKILL", state)
	}
	return took, nil
}
