package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/devmode"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store/postgres"
)

// failoverSummary is what a replica run found.
type failoverSummary struct {
	Cycles          int
	Acked           int // acknowledged writes
	AckedAfterKill  int // acknowledged by the surviving replica after a kill
	Lost            int
	Unknown         int
	FeedEvents      int // change events the watcher saw, each once, in order
	AuditChainCheck string
}

func (s failoverSummary) String() string {
	return fmt.Sprintf("failover cycles: %d, acknowledged writes: %d (by the surviving replica after a kill: %d), lost writes: %d, unknown (in flight at kill): %d, watched events: %d (no gap, no repeat), audit chain: %s",
		s.Cycles, s.Acked, s.AckedAfterKill, s.Lost, s.Unknown, s.FeedEvents, s.AuditChainCheck)
}

// runFailover runs two server replicas on one PostgreSQL database and, each
// cycle, SIGKILLs one of them while writers run through a client that
// balances over both. The writers must carry on through the survivor, and
// after the killed replica restarts every acknowledged write must be there.
func runFailover(ctx context.Context, cfg config, dsn string) (sum failoverSummary, err error) {
	if err := cfg.validate(); err != nil {
		return sum, err
	}
	dir, err := os.MkdirTemp("", "crashtest-failover-")
	if err != nil {
		return sum, err
	}
	defer os.RemoveAll(dir)
	bin := cfg.ServerBin
	if bin == "" {
		if bin, err = buildServer(ctx, dir); err != nil {
			return sum, err
		}
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return sum, err
	}
	defer logf.Close()
	// --data holds only the dev key with --store; both replicas share it.
	data := filepath.Join(dir, "careplan.db")
	start := func() (*serverProc, error) {
		return startServer(ctx, bin, data, cfg.ShutdownTimeout, logf, "--store", dsn)
	}
	var replicas [2]*serverProc
	defer func() {
		for _, r := range replicas {
			if r != nil {
				r.kill()
			}
		}
	}()
	for i := range replicas { // one at a time: the first creates the dev key
		if replicas[i], err = start(); err != nil {
			return sum, err
		}
	}
	signer, err := devmode.Signer(data)
	if err != nil {
		return sum, err
	}
	token, err := devmode.Token(signer, "nhs", time.Now())
	if err != nil {
		return sum, err
	}
	if err := checkReplicasAgree(ctx, replicas[0].addr, replicas[1].addr, token); err != nil {
		return sum, err
	}
	// One client over both replicas: round robin, so a dead replica's
	// share moves to the live one.
	res := manual.NewBuilderWithScheme("replicas")
	setAddrs := func() {
		var addrs []resolver.Address
		for _, r := range replicas {
			addrs = append(addrs, resolver.Address{Addr: r.addr})
		}
		res.UpdateState(resolver.State{Addresses: addrs})
	}
	res.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: replicas[0].addr}, {Addr: replicas[1].addr}}})
	cl, err := client.Dial(ctx, "replicas:///careplan", client.WithToken(token), client.WithDialOptions(
		grpc.WithResolvers(res), grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin":{}}]}`)))
	if err != nil {
		return sum, err
	}
	defer cl.Close()

	// A watcher follows the change feed through the same balanced client
	// for the whole run; Watch resumes by itself when its replica dies.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watched := newFeed()
	go func() { _, _ = cl.Watch(watchCtx, 0, watched.add) }()

	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed))
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	var writers []*writer
	for i := range cfg.Writers {
		writers = append(writers, newWriter(i, nonce))
	}
	var acked, unknown []write
	phase := func(d time.Duration) (int, error) {
		wctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		results := make([]writerResult, len(writers))
		var wg sync.WaitGroup
		for i, w := range writers {
			wg.Go(func() {
				// A write left in doubt by the kill ends a writer's run;
				// start it again, resynced, until the phase ends.
				for wctx.Err() == nil {
					r := w.run(wctx, cl)
					results[i].acked = append(results[i].acked, r.acked...)
					results[i].unknown = append(results[i].unknown, r.unknown...)
					if r.err != nil {
						results[i].err = r.err
						return
					}
				}
			})
		}
		wg.Wait()
		n := 0
		var errs []error
		for _, r := range results {
			acked = append(acked, r.acked...)
			unknown = append(unknown, r.unknown...)
			n += len(r.acked)
			errs = append(errs, r.err)
		}
		return n, errors.Join(errs...)
	}

	for n := 1; n <= cfg.Cycles; n++ {
		victim := n % 2
		runFor := cfg.MinRun + time.Duration(rng.Int64N(int64(cfg.MaxRun-cfg.MinRun)+1))
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(runFor / 4)
			replicas[victim].kill() // SIGKILL while writes are in flight
		}()
		before := len(acked)
		if _, err := phase(runFor / 2); err != nil {
			return sum, fmt.Errorf("cycle %d: %w", n, err)
		}
		<-done
		// Only the survivor is up now: every write from here on went
		// through it.
		after, err := phase(runFor / 2)
		if err != nil {
			return sum, fmt.Errorf("cycle %d, after the kill: %w", n, err)
		}
		sum.AckedAfterKill += after
		if replicas[victim], err = start(); err != nil {
			return sum, fmt.Errorf("cycle %d: restart: %w", n, err)
		}
		setAddrs()
		v, err := verify(ctx, cl, acked, unknown, nil)
		sum.Lost += len(v.lost)
		if err != nil {
			return sum, fmt.Errorf("cycle %d: verify: %w", n, err)
		}
		sum.Cycles++
		fmt.Fprintf(cfg.Out, "failover cycle %d/%d: replica %c killed after %v: acknowledged %d (%d by the survivor after the kill), lost %d\n",
			n, cfg.Cycles, 'A'+victim, (runFor / 2).Round(time.Millisecond), len(acked)-before, after, len(v.lost))
		if len(v.lost) > 0 {
			return sum, fmt.Errorf("%w: %d", errLost, len(v.lost))
		}
		if after == 0 {
			return sum, fmt.Errorf("cycle %d: no write was acknowledged after replica %c died: clients did not move", n, 'A'+victim)
		}
	}
	sum.Acked, sum.Unknown = len(acked), len(unknown)
	if sum.FeedEvents, err = watched.check(ctx, cl); err != nil {
		return sum, err
	}
	count, err := postgres.VerifyAudit(ctx, dsn)
	if err != nil {
		sum.AuditChainCheck = "BROKEN"
		return sum, err
	}
	sum.AuditChainCheck = fmt.Sprintf("ok (%d events)", count)
	return sum, nil
}

// feed collects what a watcher saw, for checkFeed.
type feed struct {
	mu      sync.Mutex
	seen    []int64
	marker  string        // NHS number whose CREATED event ends the check
	arrived chan struct{} // closed when the marker's event arrives
	once    sync.Once
}

func newFeed() *feed {
	return &feed{marker: fixture.NHSNumber(99999), arrived: make(chan struct{})}
}

func (f *feed) add(ev *careplanv1.CarePlanEvent) error {
	f.mu.Lock()
	f.seen = append(f.seen, ev.GetRevision())
	f.mu.Unlock()
	if ev.GetNhsNumber() == f.marker {
		f.once.Do(func() { close(f.arrived) })
	}
	return nil
}

// check writes a marker plan, waits for its event (the feed is ordered, so
// everything before it has been delivered by then), and checks the watcher
// saw revisions 1..N once each, in order, across every replica it was
// moved between.
func (f *feed) check(ctx context.Context, cl *client.Client) (int, error) {
	if _, err := cl.Create(ctx, fixture.TrustPlan(f.marker), ""); err != nil {
		return 0, fmt.Errorf("feed marker: %w", err)
	}
	select {
	case <-f.arrived:
	case <-time.After(15 * time.Second):
		return 0, errors.New("the watcher did not receive the marker event within 15s")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, rev := range f.seen {
		if rev != int64(i+1) {
			return 0, fmt.Errorf("watched feed: position %d holds revision %d: a gap or a repeat", i, rev)
		}
	}
	return len(f.seen), nil
}

// checkReplicasAgree: a write through one replica is read through the other
// at once, and an update through the other based on an older etag is
// refused with ABORTED rather than lost.
func checkReplicasAgree(ctx context.Context, addrA, addrB, token string) error {
	a, err := client.Dial(ctx, addrA, client.WithToken(token))
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := client.Dial(ctx, addrB, client.WithToken(token))
	if err != nil {
		return err
	}
	defer b.Close()
	nhs := fixture.NHSNumber(99998)
	v1, err := a.Create(ctx, fixture.TrustPlan(nhs), "")
	if err != nil {
		return fmt.Errorf("create through A: %w", err)
	}
	got, err := b.Get(ctx, nhs)
	if err != nil || got.GetEtag() != v1.GetEtag() {
		return fmt.Errorf("read through B right after a write through A: %v, %v", got.GetVersion(), err)
	}
	if _, err := a.Update(ctx, &careplanv1.CarePlan{NhsNumber: nhs, Etag: v1.GetEtag(), WhatMatters: "through A"}, []string{"what_matters"}, ""); err != nil {
		return fmt.Errorf("update through A: %w", err)
	}
	_, err = b.Update(ctx, &careplanv1.CarePlan{NhsNumber: nhs, Etag: v1.GetEtag(), WhatMatters: "through B, from v1"}, []string{"what_matters"}, "")
	if !errors.Is(err, client.ErrEtagMismatch) {
		return fmt.Errorf("stale etag through B after a write through A: %v, want ABORTED", err)
	}
	return nil
}
