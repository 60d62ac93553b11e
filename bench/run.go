//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/devmode"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// report is everything one run measured; main prints it.
type report struct {
	cfg        config
	inProcess  bool
	rounds     int
	buildTime  time.Duration
	planBytes  int // the plan as the server returns it
	phases     []phaseRow
	small      *loadReport
	large      *loadReport
	largeStart time.Duration // careplan start-up on the large store
	bareStart  time.Duration
	// largeStartMem is careplan's memory on the large store just after
	// start-up, largeMem after its read and list phases.
	largeStartMem memInfo
	largeMem      memInfo
	bareMem       memInfo
	verified      int64 // every careplan store's writes, PostgreSQL included
	acked         int64
	pg            *pgRun // nil without -postgres
	// failures are correctness problems (unverified writes, unclean
	// exits); they fail the run, unlike a missed performance target.
	failures []string
	prof     *profiler
}

type phaseRow struct {
	server string
	res    *result
}

// Phase and server names, as printed and as main looks them up.
const (
	phGetBase   = "GetCarePlan, base store"
	phGetLarge  = "GetCarePlan, large store"
	phList      = "ListCarePlans, page of 25"
	phRawBatch  = "Batch put"
	phRawUpdate = "Update put, one caller"
	phWrite     = "Create+UpdateCarePlan"
	phWriteOne  = "UpdateCarePlan, one caller"
	srvBare     = "bare grpc-go"
	srvRaw      = "raw bbolt"
	srvCareplan = "careplan"
)

func (r *report) find(server, name string) *result {
	for _, p := range r.phases {
		if p.server == server && p.res.Name == name {
			return p.res
		}
	}
	return &result{Latency: newHistogram()}
}

// bench holds what the phases share.
type bench struct {
	cfg       config
	dir       string
	serverBin string // careplan-server, built for this run; "" when in-process
	rep       *report
	running   []running
	clients   []*client
	// cleanups run after every server has stopped (dropping the
	// PostgreSQL database).
	cleanups []func() error
}

type running struct {
	name string
	t    target
}

// run performs the whole benchmark. Both stores are loaded first; then the
// bare server, careplan on the base store and careplan on the large store
// all run at once, so that each figure and its baseline can be measured in
// alternating slices rather than minutes apart on a noisy machine.
func run(ctx context.Context, cfg config) (*report, error) {
	dir, err := os.MkdirTemp(cfg.dir, "careplan-bench-")
	if err != nil {
		return nil, err
	}
	if cfg.keep {
		fmt.Fprintln(os.Stderr, "keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b := &bench{cfg: cfg, dir: dir, rep: &report{cfg: cfg, rounds: cfg.rounds, prof: &profiler{cpu: cfg.cpuProfile, mem: cfg.memProfile}}}
	b.rep.inProcess = cfg.profiling()
	if b.rep.inProcess {
		// A CPU profile covers one careplan phase from start to end, so
		// its phases run whole, not in slices between baselines.
		b.rep.rounds = 1
	}
	defer b.finish()
	if err := b.measureAll(ctx); err != nil {
		return b.rep, err
	}
	return b.rep, nil
}

func (b *bench) measureAll(ctx context.Context) error {
	cfg := b.cfg
	// The PostgreSQL replicas are always processes of their own.
	if !b.rep.inProcess || cfg.postgres != "" {
		if err := b.buildServer(ctx); err != nil {
			return err
		}
	}
	// Both data files share a directory, so both servers trust the same dev
	// key and one pair of tokens serves every phase.
	basePath, largePath := filepath.Join(b.dir, "careplan-base.db"), filepath.Join(b.dir, "careplan-large.db")
	all := nhsNumbers(max(cfg.plans, cfg.basePlans))
	var err error
	if b.rep.small, err = b.load(ctx, basePath, all[:cfg.basePlans], cfg.basePlans); err != nil {
		return err
	}
	if b.rep.large, err = b.load(ctx, largePath, all[:cfg.plans], min(cfg.listPlans, cfg.plans)); err != nil {
		return err
	}
	nhsTok, councilTok, err := tokens(basePath)
	if err != nil {
		return err
	}

	base, err := b.startCareplan(ctx, basePath, "careplan-base")
	if err != nil {
		return err
	}
	large, err := b.startCareplan(ctx, largePath, "careplan-large")
	if err != nil {
		return err
	}
	b.rep.largeStart = large.StartUp()
	if b.rep.largeStartMem, err = large.Mem(); err != nil {
		return err
	}
	baseC, err := b.dial(base)
	if err != nil {
		return err
	}
	largeC, err := b.dial(large)
	if err != nil {
		return err
	}
	// The bare server answers with exactly what careplan answered.
	plan, page, err := samples(ctx, baseC, nhsTok, councilTok, all[0])
	if err != nil {
		return err
	}
	b.rep.planBytes = proto.Size(plan)
	bare, err := b.startBare(ctx, plan, page)
	if err != nil {
		return err
	}
	b.rep.bareStart = bare.StartUp()
	bareC, err := b.dial(bare)
	if err != nil {
		return err
	}

	// One shuffled order of NHS numbers per store: round-robin (each plan
	// read once before any twice) but in random order, so a short run on a
	// big store is not served from one warm corner of the B-tree. The bare
	// server gets the same requests, tokens included, and ignores them.
	baseOrder, largeOrder := shuffled(all[:cfg.basePlans]), shuffled(all[:cfg.plans])
	reads, lists := cfg.readCallers, cfg.listCallers
	// With -postgres, two replicas on one database holding the base set
	// join the read and write comparisons as one more arm each.
	var pgC *client
	if cfg.postgres != "" {
		if pgC, err = b.startPostgres(ctx, all[:cfg.basePlans]); err != nil {
			return err
		}
	}
	readArms := []arm{
		{srvBare, phGetBase, reads, getOp(bareC, nhsTok, baseOrder), "", bare},
		{srvCareplan, phGetBase, reads, getOp(baseC, nhsTok, baseOrder), "reads", base},
		{srvCareplan, phGetLarge, reads, getOp(largeC, nhsTok, largeOrder), "", large},
	}
	if pgC != nil {
		readArms = append(readArms, arm{srvPG, phGetBase, reads, getOp(pgC, nhsTok, baseOrder), "", nil})
	}
	b.compare(ctx, readArms...)
	b.compare(ctx,
		arm{srvBare, phList, lists, listOp(bareC, councilTok, lists), "", bare},
		arm{srvCareplan, phList, lists, listOp(largeC, councilTok, lists), "lists", large})
	if b.rep.largeMem, err = large.Mem(); err != nil {
		return err
	}
	if b.rep.bareMem, err = bare.Mem(); err != nil {
		return err
	}

	raw, err := openRawBolt(filepath.Join(b.dir, "raw.db"), b.rep.planBytes)
	if err != nil {
		return err
	}
	defer raw.Close()
	// New plans take fixture numbers after the loaded ones.
	var nextNHS atomic.Int64
	nextNHS.Store(int64(cfg.basePlans))
	many := newWriters(baseC, nhsTok, cfg.planBytes, &nextNHS, cfg.writeCallers)
	one := newWriters(baseC, nhsTok, cfg.planBytes, &nextNHS, 1)
	writeArms := []arm{
		{srvRaw, phRawBatch, cfg.writeCallers, raw.batchPut, "", nil},
		{srvCareplan, phWrite, cfg.writeCallers, many.op, "writes", base},
	}
	var pgMany *writers
	if pgC != nil {
		pgMany = newWriters(pgC, nhsTok, cfg.planBytes, &nextNHS, cfg.writeCallers)
		writeArms = append(writeArms, arm{srvPG, phWrite, cfg.writeCallers, pgMany.op, "", nil})
	}
	b.compare(ctx, writeArms...)
	b.compare(ctx,
		arm{srvRaw, phRawUpdate, 1, raw.updatePut, "", nil},
		arm{srvCareplan, phWriteOne, 1, one.op, "", base})

	acked := many.all()
	for k, v := range one.all() {
		acked[k] = v // plan numbers never repeat across writers
	}
	fmt.Fprintln(os.Stderr, "verifying acknowledged writes…")
	b.rep.verified, b.rep.acked, err = verifyAcks(ctx, baseC, nhsTok, acked, 8)
	if err != nil {
		b.rep.failures = append(b.rep.failures, err.Error())
	}
	if pgMany != nil {
		// Read back through both replicas: the verifying callers share
		// pgC's connections, which alternate between them.
		fmt.Fprintln(os.Stderr, "verifying acknowledged PostgreSQL writes through both replicas…")
		pg := b.rep.pg
		pg.verified, pg.acked, err = verifyAcks(ctx, pgC, nhsTok, pgMany.all(), 8)
		if err != nil {
			b.rep.failures = append(b.rep.failures, "PostgreSQL: "+err.Error())
		}
		b.rep.verified += pg.verified
		b.rep.acked += pg.acked
	}
	return nil
}

// arm is one side of a comparison.
type arm struct {
	server, name string
	callers      int
	op           opFunc
	profile      string // profile file tag for a careplan phase; "" for none
	srv          target // the server process, for its CPU time; nil for none
}

// compare measures arms in alternating slices: each arm warms up once, then
// runs rounds slices of duration/rounds in turn (A B C A B C …), and its
// slices are added up. A figure and its baseline thus see the same noise
// from the rest of the machine.
func (b *bench) compare(ctx context.Context, arms ...arm) {
	rounds := b.rep.rounds
	slice := b.cfg.duration / time.Duration(rounds)
	totals := make([]*result, len(arms))
	for i, a := range arms {
		if b.cfg.warmup > 0 {
			drive(ctx, phase{Name: a.name + " warm-up", Callers: a.callers, Duration: b.cfg.warmup}, a.op)
		}
		totals[i] = &result{Name: a.name, Callers: a.callers, Latency: newHistogram()}
	}
	for range rounds {
		for i, a := range arms {
			var r *result
			err := b.rep.prof.around(a.profile, func() {
				cpu0, ok0 := cpuOf(a.srv)
				g0 := storeCountersOf(a.srv)
				own0, _ := readCPU(os.Getpid())
				idle0, ticks0, _ := readIdle()
				r = drive(ctx, phase{Name: a.name, Callers: a.callers, Duration: slice}, a.op)
				cpu1, ok1 := cpuOf(a.srv)
				r.Store = storeCountersOf(a.srv).since(g0)
				own1, _ := readCPU(os.Getpid())
				idle1, ticks1, _ := readIdle()
				r.CPU, r.HasCPU = cpu1-cpu0, ok0 && ok1
				r.ClientCPU = own1 - own0
				r.Idle, r.Ticks = idle1-idle0, ticks1-ticks0
			})
			if err != nil {
				b.rep.failures = append(b.rep.failures, fmt.Sprintf("profile %s: %v", a.profile, err))
			}
			totals[i].add(r)
		}
	}
	for i, a := range arms {
		r := totals[i]
		b.rep.phases = append(b.rep.phases, phaseRow{server: a.server, res: r})
		fmt.Fprintf(os.Stderr, "  %-14s %-28s %8.0f/s  p99 %s ms  server CPU %s\n", a.server, a.name, r.PerSec(), ms(r.Latency.Percentile(0.99)), cpuPerOp(r))
	}
}

// storeCountersOf reads the commit groups of a careplan server from its metrics;
// zero for any other target.
func storeCountersOf(t target) storeCounters {
	if p, ok := t.(*proc); ok && p.metricsAddr != "" {
		g, _ := scrapeStore(p.metricsAddr)
		return g
	}
	return storeCounters{}
}

func cpuOf(t target) (time.Duration, bool) {
	if t == nil {
		return 0, false
	}
	return t.CPU()
}

func (b *bench) load(ctx context.Context, path string, nhs []string, withCouncil int) (*loadReport, error) {
	fmt.Fprintf(os.Stderr, "loading %d plans into %s…\n", len(nhs), filepath.Base(path))
	rep, err := load(ctx, loadSpec{Path: path, NHS: nhs, PlanBytes: b.cfg.planBytes, WithCouncil: withCouncil, Callers: b.cfg.loadCallers, Timeout: b.cfg.loadTimeout})
	if err == nil {
		fmt.Fprintf(os.Stderr, "  loaded in %s (%.0f plans/s)\n", rep.Result.Elapsed.Round(time.Millisecond), rep.Result.PerSec())
	}
	return rep, err
}

func (b *bench) buildServer(ctx context.Context) error {
	b.serverBin = filepath.Join(b.dir, "careplan-server")
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.serverBin, "github.com/careplan/careplan/cmd/careplan-server")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build careplan-server: %w", err)
	}
	b.rep.buildTime = time.Since(start)
	return nil
}

// startCareplan starts the careplan server on dataPath in dev mode: its own
// process normally, or inside the bench when profiling.
func (b *bench) startCareplan(ctx context.Context, dataPath, name string) (target, error) {
	var (
		t   target
		err error
	)
	if b.rep.inProcess {
		t, err = startInProc(ctx, dataPath, filepath.Join(b.dir, name+".log"))
	} else {
		var p *proc
		if p, err = b.careplanProc(ctx, name, dataPath); err == nil {
			t = p
		}
	}
	if err != nil {
		return nil, err
	}
	b.running = append(b.running, running{name, t})
	return t, nil
}

// careplanProc runs careplan-server as its own process in dev mode, with
// dataPath as --data and extra flags after the bench's own; its log is
// name.log in the run's directory. The caller records it in b.running.
func (b *bench) careplanProc(ctx context.Context, name, dataPath string, extra ...string) (*proc, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	// Every bench caller holds the same dev token, so the per-caller rate
	// limit (a policy, not a cost) would cap a whole phase at one user's
	// allowance; it is off here, as it is for server.New in-process.
	maddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"--dev", "--addr", addr, "--data", dataPath, "--rate-limit", "0", "--metrics-addr", maddr}
	args = append(append(args, strings.Fields(b.cfg.serverFlags)...), extra...)
	p, err := startProc(ctx, name, b.serverBin, args, addr, filepath.Join(b.dir, name+".log"))
	if p != nil {
		p.metricsAddr = maddr
	}
	return p, err
}

// startBare runs the bare server as its own process: the bench's own binary
// with the bare-server sub-command.
func (b *bench) startBare(ctx context.Context, plan *careplanv1.CarePlan, page *careplanv1.ListCarePlansResponse) (target, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	planFile, pageFile, err := writeBareFiles(b.dir, plan, page)
	if err != nil {
		return nil, err
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	args := []string{bareCommand, "-addr", addr, "-plan", planFile, "-page", pageFile}
	t, err := startProc(ctx, srvBare, self, args, addr, filepath.Join(b.dir, "bare.log"))
	if err != nil {
		return nil, err
	}
	b.running = append(b.running, running{srvBare, t})
	return t, nil
}

// dial connects a client to ts, spreading -conns connections over them;
// stopAll closes it.
func (b *bench) dial(ts ...target) (*client, error) {
	addrs := make([]string, len(ts))
	for i, t := range ts {
		addrs[i] = t.Addr()
	}
	c, err := dial(b.cfg.conns, addrs...)
	if err == nil {
		b.clients = append(b.clients, c)
	}
	return c, err
}

// finish stops everything, then runs the cleanups; a cleanup that fails
// (a database left behind) is a failure of the run.
func (b *bench) finish() {
	b.stopAll()
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		if err := b.cleanups[i](); err != nil {
			b.rep.failures = append(b.rep.failures, err.Error())
		}
	}
	b.cleanups = nil
}

// stopAll closes the clients, then stops every server, newest first, and
// records an unclean exit as a failure.
func (b *bench) stopAll() {
	for _, c := range b.clients {
		c.Close()
	}
	b.clients = nil
	for i := len(b.running) - 1; i >= 0; i-- {
		r := b.running[i]
		if err := r.t.Stop(); err != nil {
			b.rep.failures = append(b.rep.failures, fmt.Sprintf("%s: %v", r.name, err))
		}
	}
	b.running = nil
}

// tokens mints the dev NHS and council tokens with the key beside dataPath,
// the key the server trusts in --dev mode.
func tokens(dataPath string) (nhs, council string, err error) {
	signer, err := devmode.Signer(dataPath)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	if nhs, err = devmode.Token(signer, "nhs", now); err != nil {
		return "", "", err
	}
	council, err = devmode.Token(signer, "council", now)
	return nhs, council, err
}

// samples fetches one plan and one list page from careplan, for the bare
// server to return.
func samples(ctx context.Context, c *client, nhsTok, councilTok, nhs string) (*careplanv1.CarePlan, *careplanv1.ListCarePlansResponse, error) {
	cctx, cancel := withToken(ctx, nhsTok)
	defer cancel()
	plan, err := c.api(0).GetCarePlan(cctx, &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	if err != nil {
		return nil, nil, fmt.Errorf("sample GetCarePlan: %w", err)
	}
	lctx, lcancel := withToken(ctx, councilTok)
	defer lcancel()
	page, err := c.api(0).ListCarePlans(lctx, &careplanv1.ListCarePlansRequest{PageSize: 25})
	if err != nil {
		return nil, nil, fmt.Errorf("sample ListCarePlans: %w", err)
	}
	return plan, page, nil
}

// shuffled returns a copy of s in a fixed random order (the same every run).
func shuffled(s []string) []string {
	out := append([]string(nil), s...)
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// errFailed marks a run that measured but found a correctness problem.
var errFailed = errors.New("benchmark found failures")
