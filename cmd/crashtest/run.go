package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/devmode"
)

// config is one harness run.
type config struct {
	Cycles  int
	Writers int
	// Each cycle writes for a random time in [MinRun, MaxRun] before the
	// server is stopped.
	MinRun, MaxRun time.Duration
	Seed           uint64
	// SigtermEvery makes every Nth cycle end with SIGTERM instead of
	// SIGKILL; 0 means never.
	SigtermEvery int
	// ShutdownTimeout is passed to --shutdown-timeout; a SIGTERMed server
	// must exit within it plus shutdownMargin.
	ShutdownTimeout time.Duration
	// ServerBin is a prebuilt careplan-server; empty builds one.
	ServerBin string
	// Dir holds the data file, the binary and server.log. It must be empty
	// or absent. Empty means a fresh temporary directory, removed when the
	// run succeeds and kept (and reported in summary.Dir) when it fails.
	Dir string
	// Out receives one line per cycle.
	Out io.Writer
}

// shutdownMargin is the time allowed beyond --shutdown-timeout for a
// SIGTERMed server to close its store and exit.
const shutdownMargin = 5 * time.Second

func (c config) validate() error {
	switch {
	case c.Cycles < 1 || c.Writers < 1:
		return errors.New("cycles and writers must be at least 1")
	case c.MinRun <= 0 || c.MaxRun < c.MinRun:
		return errors.New("want 0 < min-run <= max-run")
	case c.SigtermEvery < 0 || c.ShutdownTimeout <= 0:
		return errors.New("want sigterm-every >= 0 and shutdown-timeout > 0")
	}
	return nil
}

// summary is what a run found. It is filled in as far as the run got. Its
// String is the summary line; Landed is reported beside it.
type summary struct {
	Cycles, SigKills, SigTerms int
	Acked                      int // acknowledged writes
	Lost                       int // acknowledged writes missing after a restart
	Unknown                    int // writes in flight when the server went down
	Landed                     int // unknown writes that turned out stored
	Reads                      int // answered reads, each with an audit event
	CheckFailed                bool
	Dir                        string // the kept working directory, after a failure
}

func (s summary) String() string {
	check := "ok"
	if s.CheckFailed {
		check = "FAILED"
	}
	return fmt.Sprintf("cycles: %d (sigkill %d, sigterm %d), acknowledged writes: %d, lost writes: %d, unknown (in flight at kill): %d, answered reads: %d, tx.Check: %s",
		s.Cycles, s.SigKills, s.SigTerms, s.Acked, s.Lost, s.Unknown, s.Reads, check)
}

// harness is the state that carries from cycle to cycle.
type harness struct {
	cfg     config
	bin     string
	data    string
	log     *os.File // the server's stderr, all cycles
	rng     *rand.Rand
	writers []*writer
	acked   []write // every acknowledged write so far
	unknown []write // every write in doubt in earlier cycles
	reads   int     // answered reads so far
	token   string
	srv     *serverProc // the running server, if any
}

// run starts the server, then for each cycle: writes under load, stops the
// server (SIGKILL, or SIGTERM every SigtermEvery cycles), checks the bbolt
// file while the server is down, restarts it and verifies every
// acknowledged write. It stops at the first failure; the error says why.
func run(ctx context.Context, cfg config) (sum summary, err error) {
	if err := cfg.validate(); err != nil {
		return sum, err
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	dir := cfg.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "crashtest-"); err != nil {
			return sum, err
		}
		defer func() {
			if err == nil {
				_ = os.RemoveAll(dir)
			} else {
				sum.Dir = dir
			}
		}()
	}
	h, err := newHarness(ctx, cfg, dir)
	if err != nil {
		return sum, err
	}
	defer h.close()
	if err := h.restart(ctx); err != nil {
		return sum, err
	}
	for n := 1; n <= cfg.Cycles; n++ {
		if err := h.cycle(ctx, n, &sum); err != nil {
			return sum, fmt.Errorf("cycle %d: %w", n, err)
		}
	}
	// Leave the data file closed cleanly; this shutdown is not under load.
	if _, err := h.stop(sigterm); err != nil {
		return sum, fmt.Errorf("final shutdown: %w", err)
	}
	return sum, nil
}

func newHarness(ctx context.Context, cfg config, dir string) (*harness, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "careplan.db")
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s already holds a data file; the harness needs a fresh one", dir)
	}
	bin := cfg.ServerBin
	if bin == "" {
		var err error
		if bin, err = buildServer(ctx, dir); err != nil {
			return nil, err
		}
	}
	log, err := os.OpenFile(filepath.Join(dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, bin: bin, data: data, log: log, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed))}
	// The nonce makes markers (and request ids) unique even across runs.
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := range cfg.Writers {
		h.writers = append(h.writers, newWriter(i, nonce))
	}
	return h, nil
}

// close kills the server if one is still running.
func (h *harness) close() {
	if h.srv != nil {
		h.srv.kill()
	}
	_ = h.log.Close()
}

// restart starts the server on the data file and, the first time, mints
// the token from the dev key the server created beside it.
func (h *harness) restart(ctx context.Context) error {
	srv, err := startServer(ctx, h.bin, h.data, h.cfg.ShutdownTimeout, h.log)
	if err != nil {
		return err
	}
	h.srv = srv
	if h.token == "" {
		signer, err := devmode.Signer(h.data)
		if err != nil {
			return err
		}
		if h.token, err = devmode.Token(signer, "nhs", time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// dial connects to the running server as the NHS trust.
func (h *harness) dial(ctx context.Context) (*client.Client, error) {
	return client.Dial(ctx, h.srv.addr, client.WithToken(h.token))
}
