// Command crashtest checks that careplan-server never loses an acknowledged
// write. It builds the real server binary, drives concurrent writers against
// it, kills it with SIGKILL at random moments (and with SIGTERM every few
// cycles, which must drain and exit 0), runs bbolt's consistency check on
// the data file while the server is down, restarts it on the same file and
// verifies every acknowledged write.
//
//	go run ./cmd/crashtest [-cycles 20] [-writers 16] [-min-run 200ms -max-run 2s] [-seed N]
//
// It exits 1 if a write was lost, tx.Check failed, or a SIGTERM did not end
// in exit status 0 within the shutdown bound. The Go test in this directory
// runs a short version.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg := config{Out: os.Stdout}
	flag.IntVar(&cfg.Cycles, "cycles", 20, "kill/restart cycles")
	flag.IntVar(&cfg.Writers, "writers", 16, "concurrent writers, each with its own plans")
	flag.DurationVar(&cfg.MinRun, "min-run", 200*time.Millisecond, "shortest write phase before the server is stopped")
	flag.DurationVar(&cfg.MaxRun, "max-run", 2*time.Second, "longest write phase before the server is stopped")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "seed for the write-phase durations")
	flag.IntVar(&cfg.SigtermEvery, "sigterm-every", 5, "end every Nth cycle with SIGTERM instead of SIGKILL (0: never)")
	flag.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 5*time.Second, "the server's --shutdown-timeout")
	flag.StringVar(&cfg.ServerBin, "server", "", "prebuilt careplan-server binary (default: build ./cmd/careplan-server)")
	dsn := flag.String("store", "", "postgres:// URL of an empty database: run two replicas on it and SIGKILL one per cycle instead")
	flag.Parse()

	// Ctrl-C ends the run through ctx, so the server child is still killed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("crashtest: %d cycles, %d writers, write phase %v..%v, seed %d\n",
		cfg.Cycles, cfg.Writers, cfg.MinRun, cfg.MaxRun, cfg.Seed)
	if *dsn != "" {
		sum, err := runFailover(ctx, cfg, *dsn)
		fmt.Println(sum)
		if err != nil {
			fmt.Fprintln(os.Stderr, "crashtest: FAIL:", err)
			os.Exit(1)
		}
		return
	}
	sum, err := run(ctx, cfg)
	fmt.Println(sum)
	fmt.Printf("unknown writes found stored after restart: %d of %d\n", sum.Landed, sum.Unknown)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crashtest: FAIL:", err)
		if sum.Dir != "" {
			fmt.Fprintln(os.Stderr, "crashtest: data file, server binary and server.log kept in", sum.Dir)
		}
		os.Exit(1)
	}
}
