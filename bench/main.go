//go:build linux

// Command bench is careplan's benchmark harness. It starts everything it
// needs (the careplan server as its own process, a bare grpc-go server, a
// raw bbolt file), loads plans, drives concurrent clients over loopback,
// checks that every acknowledged write is readable, and prints each figure
// as a ratio against a baseline measured in the same run, because the
// machines it runs on are shared and noisy.
//
//	go run ./bench                  # quick run, about two minutes
//	go run ./bench -plans 1000000   # the full scale run
//	.ci/with-postgres go run ./bench # adds two replicas on PostgreSQL
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// config is the command line. The quick run and the million-plan run
// differ only in these numbers.
type config struct {
	plans, basePlans, listPlans int
	readCallers, writeCallers   int
	listCallers, loadCallers    int
	conns, planBytes            int
	rounds                      int
	duration, warmup            time.Duration
	loadTimeout                 time.Duration
	dir                         string
	keep                        bool
	cpuProfile, memProfile      string
	postgres                    string // admin DSN of a PostgreSQL server; "" for none
	serverFlags                 string // more careplan-server flags, space-separated
}

// profiling runs the careplan server inside the bench, where pprof can see it.
func (c config) profiling() bool { return c.cpuProfile != "" || c.memProfile != "" }

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&c.plans, "plans", 20000, "plans in the large store (the scale figures); the full run is 1000000")
	fs.IntVar(&c.basePlans, "base-plans", 10000, "plans in the base store: reads and writes against the baselines, and the scale baseline")
	fs.IntVar(&c.listPlans, "list-plans", 50000, "plans in the large store related to the listing organisation (capped at -plans)")
	fs.IntVar(&c.readCallers, "read-callers", 50, "concurrent GetCarePlan callers")
	fs.IntVar(&c.writeCallers, "write-callers", 64, "concurrent writers (careplan and raw bbolt Batch)")
	fs.IntVar(&c.listCallers, "list-callers", 1, "concurrent ListCarePlans callers")
	fs.IntVar(&c.loadCallers, "load-callers", 256, "goroutines creating plans while loading a store")
	fs.IntVar(&c.conns, "conns", 4, "client connections shared by the callers of a phase")
	fs.IntVar(&c.planBytes, "plan-bytes", 4000, "size of the plan a client creates; the stored plan adds the server-set fields")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of each measured phase")
	fs.IntVar(&c.rounds, "rounds", 5, "slices each -duration is cut into, alternating a figure with its baseline")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured run before each phase")
	fs.DurationVar(&c.loadTimeout, "load-timeout", 3*time.Hour, "give up loading a store after this long")
	fs.StringVar(&c.dir, "dir", "", "parent of the run's temporary directory (default: the system temp dir)")
	fs.StringVar(&c.serverFlags, "server-flags", "", "more careplan-server flags, space-separated, for example '--max-mapped-mb 0'")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory (stores, server logs)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "run careplan in-process and write CPU profiles FILE.reads, FILE.lists and FILE.writes (with the extension kept last)")
	fs.StringVar(&c.memProfile, "memprofile", "", "run careplan in-process and write allocation profiles FILE.reads, FILE.lists and FILE.writes")
	// The default is read after parsing, so -help never prints a DSN (which
	// may hold a password).
	fs.StringVar(&c.postgres, "postgres", "", "postgres:// DSN of a PostgreSQL server on which to create (and drop) a database for two careplan replicas; '' for none (default $"+postgresEnv+")")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == "postgres" })
	if !set {
		c.postgres = os.Getenv(postgresEnv)
	}
	switch {
	case fs.NArg() > 0:
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case c.plans < 1 || c.basePlans < 1 || c.listPlans < 1:
		return c, errors.New("-plans, -base-plans and -list-plans must be positive")
	case c.readCallers < 1 || c.writeCallers < 1 || c.listCallers < 1 || c.loadCallers < 1 || c.conns < 1 || c.rounds < 1:
		return c, errors.New("caller, connection and round counts must be positive")
	case c.duration <= 0 || c.warmup < 0 || c.loadTimeout <= 0:
		return c, errors.New("-duration and -load-timeout must be positive")
	case c.postgres != "" && !strings.HasPrefix(c.postgres, "postgres://") && !strings.HasPrefix(c.postgres, "postgresql://"):
		return c, errors.New("-postgres takes a postgres:// URL")
	}
	return c, nil
}

// postgresEnv is the variable .ci/with-postgres sets to its server's DSN.
const postgresEnv = "CAREPLAN_TEST_POSTGRES"

func main() {
	if len(os.Args) > 1 && os.Args[1] == bareCommand {
		if err := runBare(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bare server:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	start := time.Now()
	rep, err := run(ctx, cfg)
	if rep != nil && rep.small != nil && rep.large != nil {
		rep.print(os.Stdout, time.Since(start))
		rep.prof.printTop(os.Stdout)
	}
	if err == nil && len(rep.failures) > 0 {
		err = errFailed
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// print writes the phase table and the figures table.
func (r *report) print(w io.Writer, total time.Duration) {
	cfg := r.cfg
	where := "careplan-server as its own process (built with go build for this run), one per store"
	if r.inProcess {
		where = "careplan IN the bench process (profiling): its RSS and start-up are the bench's, and ratios are not comparable"
	} else if cfg.serverFlags != "" {
		where += ", with " + cfg.serverFlags
	}
	fmt.Fprintf(w, "\ncareplan bench: %d CPUs, %s RAM, %s %s/%s; total %s\n", runtime.NumCPU(), memTotal(), runtime.Version(), runtime.GOOS, runtime.GOARCH, total.Round(time.Second))
	fmt.Fprintf(w, "servers: %s; bare grpc-go baseline as its own process; raw bbolt in the bench process\n", where)
	fmt.Fprintf(w, "plan: %d bytes as returned (%d as created); base store %d plans, large store %d plans (%d related to council C123)\n",
		r.planBytes, cfg.planBytes, cfg.basePlans, cfg.plans, min(cfg.listPlans, cfg.plans))
	fmt.Fprintf(w, "callers: %d readers, %d writers, %d lister(s) over %d connection(s); each phase %s after a %s warm-up, in %d alternating slices with its baseline\n",
		cfg.readCallers, cfg.writeCallers, cfg.listCallers, cfg.conns, cfg.duration, cfg.warmup, r.rounds)
	fmt.Fprintf(w, "loading: base store %s (%.0f plans/s), large store %s (%.0f plans/s), %d goroutines through Store.Create\n",
		r.small.Result.Elapsed.Round(time.Millisecond), r.small.Result.PerSec(), r.large.Result.Elapsed.Round(time.Millisecond), r.large.Result.PerSec(), cfg.loadCallers)
	if pg := r.pg; pg != nil && pg.load != nil {
		var starts []string
		for _, d := range pg.startUp {
			starts = append(starts, fmt.Sprintf("%.3f s", d.Seconds()))
		}
		fmt.Fprintf(w, "postgres: PostgreSQL %s on loopback, on the same CPUs; a fresh database with the base set (%d plans, loaded in %s, %.0f plans/s); %d careplan-server replicas (--store, start-up %s), %d connection(s) to each\n",
			pg.version, cfg.basePlans, pg.load.Elapsed.Round(time.Millisecond), pg.load.PerSec(), pgReplicas, strings.Join(starts, ", "), pg.connsPerReplica)
	}
	if r.buildTime > 0 {
		fmt.Fprintf(w, "careplan-server build: %s\n", r.buildTime.Round(time.Millisecond))
	}

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "server\tphase\tcallers\tops\terrors\tops/s\tp50 ms\tp99 ms\tmax ms\tserver CPU/op\tclient CPU/op\tidle\tops/fsync\tunmaps")
	var firstErrs []string
	for _, p := range r.phases {
		res := p.res
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t%s\t%s\n", p.server, res.Name, res.Callers, res.Ops, res.Errors, res.PerSec(),
			ms(res.Latency.Percentile(0.5)), ms(res.Latency.Percentile(0.99)), ms(res.Latency.Max()), cpuPerOp(res), perOp(res.ClientCPU, res.Ops), 100*res.IdleShare(), opsPerGroup(res.Store), unmaps(res))
		if res.FirstErr != nil {
			firstErrs = append(firstErrs, fmt.Sprintf("%s %s: first error: %v", p.server, res.Name, res.FirstErr))
		}
	}
	tw.Flush()
	for _, e := range firstErrs {
		fmt.Fprintln(w, e)
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tcareplan\tbaseline (same run)\tratio\ttarget\tresult")
	for _, f := range r.figures() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.name, f.value, f.baseline, f.ratio, f.target, f.result)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nRSS of careplan on the large store: after start-up %s (anonymous %s, file %s); after its phases %s, peak %s (anonymous %s, bbolt and binary file pages %s)\n",
		mb(r.largeStartMem.RSS), mb(r.largeStartMem.Anon), mb(r.largeStartMem.File),
		mb(r.largeMem.RSS), mb(r.largeMem.Peak), mb(r.largeMem.Anon), mb(r.largeMem.File))
	fmt.Fprintf(w, "bytes on disk per plan (large store, %s file), by bucket:", mb(r.large.FileBytes))
	for _, b := range r.large.Buckets {
		fmt.Fprintf(w, " %s %d", b.Name, b.Bytes/int64(cfg.plans))
	}
	fmt.Fprintln(w)
	if cfg.plans < 1000000 {
		fmt.Fprintf(w, "note: the scale targets are for 1,000,000 plans; this run used %d (go run ./bench -plans 1000000 for the full run)\n", cfg.plans)
	}
	for _, f := range r.failures {
		fmt.Fprintln(w, "FAILURE:", f)
	}
}

type figure struct{ name, value, baseline, ratio, target, result string }

// figures computes every target figure from the phases.
func (r *report) figures() []figure {
	cfg := r.cfg
	cpGet, bareGet := r.find(srvCareplan, phGetBase), r.find(srvBare, phGetBase)
	cpWrite, rawBatch := r.find(srvCareplan, phWrite), r.find(srvRaw, phRawBatch)
	cpOne, rawOne := r.find(srvCareplan, phWriteOne), r.find(srvRaw, phRawUpdate)
	getLarge := r.find(srvCareplan, phGetLarge)
	cpList, bareList := r.find(srvCareplan, phList), r.find(srvBare, phList)
	p50, p99 := func(x *result) time.Duration { return x.Latency.Percentile(0.5) }, func(x *result) time.Duration { return x.Latency.Percentile(0.99) }

	diskPerPlan := float64(r.large.FileBytes) / float64(cfg.plans)
	verified := "FAIL"
	if r.acked > 0 && r.verified == r.acked {
		verified = "PASS"
	}
	exits := "PASS"
	if len(r.failures) > 0 {
		exits = "see FAILURE"
	}
	figs := []figure{
		atLeast(fmt.Sprintf("reads/s, GetCarePlan x%d, %d plans", cfg.readCallers, cfg.basePlans),
			perSec(cpGet), perSec(bareGet)+" "+srvBare, cpGet.PerSec(), bareGet.PerSec(), 0.8),
		atMost("read p99", ms(p99(cpGet))+" ms", ms(p99(bareGet))+" ms "+srvBare, seconds(p99(cpGet)), seconds(p99(bareGet)), 2),
		atLeast(fmt.Sprintf("writes/s, Create+Update x%d", cfg.writeCallers),
			perSec(cpWrite), perSec(rawBatch)+" raw Batch", cpWrite.PerSec(), rawBatch.PerSec(), 1),
		absolute("single-caller write p50", ms(p50(cpOne))+" ms", ms(p50(rawOne))+" ms raw Update",
			seconds(p50(cpOne)), seconds(p50(rawOne)), 0.002, "<= 2 ms"),
		atMost(fmt.Sprintf("Get p99 at %d vs %d plans", cfg.plans, cfg.basePlans), ms(p99(getLarge))+" ms",
			ms(p99(cpGet))+fmt.Sprintf(" ms at %d", cfg.basePlans), seconds(p99(getLarge)), seconds(p99(cpGet)), 1.5),
		absolute(fmt.Sprintf("ListCarePlans p99, org with %d plans", min(cfg.listPlans, cfg.plans)), ms(p99(cpList))+" ms",
			ms(p99(bareList))+" ms "+srvBare, seconds(p99(cpList)), seconds(p99(bareList)), 0.005, "<= 5 ms"),
		absolute(fmt.Sprintf("server RSS peak, %d plans", cfg.plans), mb(r.largeMem.Peak), mb(r.bareMem.Peak)+" "+srvBare,
			float64(r.largeMem.Peak), float64(r.bareMem.Peak), 300<<20, "<= 300 MB"),
		// bbolt reads through a shared mmap, so RSS also counts the file's
		// page-cache pages the server has touched (and the kernel's
		// fault-around neighbours); without them it is heap and stacks.
		absolute("  of which anonymous (heap, stacks)", mb(r.largeMem.Anon), mb(r.bareMem.Anon)+" "+srvBare,
			float64(r.largeMem.Anon), float64(r.bareMem.Anon), 300<<20, "<= 300 MB"),
		absolute(fmt.Sprintf("start-up to SERVING, %d plans", cfg.plans), fmt.Sprintf("%.3f s", r.largeStart.Seconds()),
			fmt.Sprintf("%.3f s %s", r.bareStart.Seconds(), srvBare), r.largeStart.Seconds(), r.bareStart.Seconds(), 2, "<= 2 s"),
	}
	if r.pg != nil {
		pgGet, pgWrite := r.find(srvPG, phGetBase), r.find(srvPG, phWrite)
		figs = append(figs,
			figure{name: "reads/s on PostgreSQL x2 vs bbolt", value: perSec(pgGet), baseline: perSec(cpGet) + " careplan bbolt",
				ratio: ratio(pgGet.PerSec(), cpGet.PerSec()), target: "report", result: "-"},
			figure{name: "writes/s on PostgreSQL x2 vs bbolt", value: perSec(pgWrite), baseline: perSec(cpWrite) + " careplan bbolt",
				ratio: ratio(pgWrite.PerSec(), cpWrite.PerSec()), target: "report", result: "-"})
	}
	figs = append(figs, []figure{
		{name: "bytes on disk per plan", value: fmt.Sprintf("%.0f B", diskPerPlan), baseline: fmt.Sprintf("%d B plan", r.planBytes),
			ratio: ratio(diskPerPlan, float64(r.planBytes)), target: "report", result: "-"},
		{name: "acknowledged writes verified", value: fmt.Sprintf("%d/%d", r.verified, r.acked), baseline: "-", ratio: "-", target: "all", result: verified},
	}...)
	if pg := r.pg; pg != nil {
		pgVerified := "FAIL"
		if pg.acked > 0 && pg.verified == pg.acked {
			pgVerified = "PASS"
		}
		figs = append(figs, figure{name: "  of which on PostgreSQL x2", value: fmt.Sprintf("%d/%d", pg.verified, pg.acked),
			baseline: "-", ratio: "-", target: "all", result: pgVerified})
	}
	return append(figs, figure{name: "SIGTERM then exit status 0", value: "every server", baseline: "-", ratio: "-", target: "all", result: exits})
}

// atLeast is a throughput figure whose target is a minimum ratio.
func atLeast(name, value, baseline string, v, base, minRatio float64) figure {
	return figure{name, value, baseline, ratio(v, base), fmt.Sprintf(">= %.2fx", minRatio), passIf(base > 0 && v/base >= minRatio)}
}

// atMost is a latency figure whose target is a maximum ratio.
func atMost(name, value, baseline string, v, base, maxRatio float64) figure {
	return figure{name, value, baseline, ratio(v, base), fmt.Sprintf("<= %.2fx", maxRatio), passIf(base > 0 && v/base <= maxRatio)}
}

// absolute is a figure whose target is an absolute bound; the ratio to its
// baseline is still shown, to tell the machine's share from careplan's.
func absolute(name, value, baseline string, v, base, limit float64, target string) figure {
	return figure{name, value, baseline, ratio(v, base), target, passIf(v > 0 && v <= limit)}
}

func passIf(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func ratio(v, base float64) string {
	if base <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", v/base)
}

func perSec(r *result) string { return fmt.Sprintf("%.0f/s", r.PerSec()) }

func seconds(d time.Duration) float64 { return d.Seconds() }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// cpuPerOp is the server process's CPU time per operation, in µs: a
// steadier measure than ops/s on a shared machine, since it does not count
// time spent waiting for the CPU.
func cpuPerOp(r *result) string {
	return perOp(r.CPUPerOp(), 1)
}

// opsPerGroup is how many operations shared a commit group (and its fsync).
func opsPerGroup(g storeCounters) string {
	if g.Groups <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", g.Ops/g.Groups)
}

// unmaps is how often the store unmapped the data file's pages in the
// phase, and how long each took.
func unmaps(r *result) string {
	if r.Store.Unmaps <= 0 || r.Elapsed <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f/s, %.1f ms", r.Store.Unmaps/r.Elapsed.Seconds(), 1000*r.Store.UnmapSeconds/r.Store.Unmaps)
}

// perOp is d/ops in µs, or "-" when there is nothing to tell.
func perOp(d time.Duration, ops int64) string {
	if d <= 0 || ops <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(ops)/float64(time.Microsecond))
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

// memTotal is the machine's memory, from /proc/meminfo.
func memTotal() string {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "?"
	}
	for line := range strings.Lines(string(raw)) {
		var kb int64
		if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
			return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	return "?"
}
