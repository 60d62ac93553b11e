package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/devmode"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// defaultAddr is where `careplan-server --dev` listens.
const defaultAddr = "127.0.0.1:50051"

// command is one subcommand. The table below is the whole CLI: a new
// command is one more row and one more function.
type command struct {
	name     string
	synopsis string // arguments, for the usage text
	summary  string
	run      func(ctx context.Context, e *env, args []string) error
}

var commands = []command{
	{"get", "NHS", "print the current plan", runGet},
	{"create", "-f FILE [--request-id ID]", `create a plan from protojson FILE ("-" reads stdin)`, runCreate},
	{"update", "-f FILE [--mask a,b] [--request-id ID]", "update a plan from FILE, which holds its etag; no --mask: the implied mask (AIP-134)", runUpdate},
	{"history", "NHS", "print every stored version, oldest first", runHistory},
	{"watch", "[--from N] [--state FILE]", "print change events as JSON lines until interrupted; --state saves the last revision in FILE and resumes from it (--from wins)", runWatch},
	{"audit", "[--nhs NHS] [--since RFC3339] [--until RFC3339]", "print the audit events the caller may see as JSON lines (role audit:read)", runAudit},
	{"backup", "-o FILE", `write a hot backup to FILE (mode 0600), print {"file","bytes"} (role careplan:admin)`, runBackup},
	{"token", "[nhs|council|emergency] [--data PATH]", "print a dev token signed by the dev key beside PATH (default ./data/careplan.db)", runToken},
}

// env is what the commands share: the I/O streams, the global flags, and the
// connection, made on first use so that `token` needs no server.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	addr, reason   string
	// useTLS, or any of tlsFiles, connects with TLS.
	useTLS   bool
	tlsFiles client.TLSFiles
	client   *client.Client
}

// dispatch parses the global flags and runs the named command.
func (e *env) dispatch(ctx context.Context, args []string) error {
	fs := e.flags("careplan")
	fs.StringVar(&e.addr, "addr", envOr("CAREPLAN_ADDR", defaultAddr), "server `HOST:PORT`")
	fs.BoolVar(&e.useTLS, "tls", os.Getenv("CAREPLAN_TLS") == "1", "connect with TLS")
	fs.StringVar(&e.tlsFiles.CA, "tls-ca", os.Getenv("CAREPLAN_TLS_CA"), "CA bundle (PEM) to verify the server")
	fs.StringVar(&e.tlsFiles.Cert, "tls-cert", os.Getenv("CAREPLAN_TLS_CERT"), "client certificate (PEM), for mutual TLS")
	fs.StringVar(&e.tlsFiles.Key, "tls-key", os.Getenv("CAREPLAN_TLS_KEY"), "client key (PEM)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("no command given")
	}
	name, args := fs.Arg(0), fs.Args()[1:]
	for _, c := range commands {
		if c.name == name {
			defer e.close()
			return c.run(ctx, e, args)
		}
	}
	return usageError(fmt.Sprintf("unknown command %q", name))
}

// flags returns a flag set for a command. Each one accepts --reason, so the
// break-glass reason may be given before or after the command name.
func (e *env) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints its own usage text, once
	fs.StringVar(&e.reason, "reason", e.reason, "break-glass `reason`, sent as x-access-reason")
	return fs
}

// dial connects on first use, with the token from $CAREPLAN_TOKEN if set.
func (e *env) dial(ctx context.Context) (*client.Client, error) {
	if e.client != nil {
		return e.client, nil
	}
	var opts []client.Option
	if tok := os.Getenv("CAREPLAN_TOKEN"); tok != "" {
		opts = append(opts, client.WithToken(tok))
	}
	if e.useTLS || e.tlsFiles != (client.TLSFiles{}) {
		cfg, err := e.tlsFiles.Config()
		if err != nil {
			return nil, inputError{err}
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	c, err := client.Dial(ctx, e.addr, opts...)
	if err != nil {
		return nil, err
	}
	e.client = c
	return c, nil
}

func (e *env) close() {
	if e.client != nil {
		_ = e.client.Close()
	}
}

// callContext adds the break-glass reason, if one was given, to ctx.
func (e *env) callContext(ctx context.Context) context.Context {
	if e.reason == "" {
		return ctx
	}
	return client.WithAccessReason(ctx, e.reason)
}

func runGet(ctx context.Context, e *env, args []string) error {
	nhs, err := oneNHS(e.flags("get"), args)
	if err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	plan, err := c.Get(e.callContext(ctx), nhs)
	if err != nil {
		return err
	}
	return e.print(plan)
}

func runHistory(ctx context.Context, e *env, args []string) error {
	nhs, err := oneNHS(e.flags("history"), args)
	if err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	versions, err := c.History(e.callContext(ctx), nhs)
	if err != nil {
		return err
	}
	// The response message gives the list a protojson form: {"versions": [...]}.
	return e.print(&careplanv1.ListCarePlanVersionsResponse{Versions: versions})
}

func runCreate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("create")
	file := fs.String("f", "", "protojson care plan `FILE`, - for stdin")
	requestID := fs.String("request-id", "", "makes a retry of this create safe")
	plan, err := e.planArg(fs, args, file)
	if err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	stored, err := c.Create(e.callContext(ctx), plan, *requestID)
	if err != nil {
		return err
	}
	return e.print(stored)
}

func runUpdate(ctx context.Context, e *env, args []string) error {
	fs := e.flags("update")
	file := fs.String("f", "", "protojson care plan `FILE` including its etag, - for stdin")
	mask := fs.String("mask", "", "comma-separated field `paths` to change; * replaces the whole plan")
	requestID := fs.String("request-id", "", "makes a retry of this update safe")
	plan, err := e.planArg(fs, args, file)
	if err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	stored, err := c.Update(e.callContext(ctx), plan, splitMask(*mask), *requestID)
	if err != nil {
		return err
	}
	return e.print(stored)
}

func runToken(_ context.Context, e *env, args []string) error {
	fs := e.flags("token")
	data := fs.String("data", "./data/careplan.db", "the server's data `FILE`; the dev key sits beside it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	caller := "nhs"
	switch len(pos) {
	case 0:
	case 1:
		caller = pos[0]
	default:
		return usageError("token takes at most one caller: nhs or council")
	}
	signer, err := devmode.Signer(*data)
	if err != nil {
		return err
	}
	tok, err := devmode.Token(signer, caller, time.Now())
	if err != nil {
		return usageError(err.Error())
	}
	// A bare token, not JSON, so `export CAREPLAN_TOKEN=$(careplan token)` works.
	_, err = fmt.Fprintln(e.stdout, tok)
	return err
}

// oneNHS parses a command whose only argument is an NHS number.
func oneNHS(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usageError(fs.Name() + " takes one NHS number")
	}
	return pos[0], nil
}

// noArgs parses a command that takes flags only.
func noArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parse(fs, args)
	if err == nil && len(pos) > 0 {
		err = usageError(fs.Name() + " takes no arguments")
	}
	return err
}

// planArg parses a command that takes a plan with -f and no positional
// arguments, and reads the plan.
func (e *env) planArg(fs *flag.FlagSet, args []string, file *string) (*careplanv1.CarePlan, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return nil, err
	}
	if *file == "" || len(pos) > 0 {
		return nil, usageError(fs.Name() + " takes -f FILE and no other arguments")
	}
	return e.readPlan(*file)
}

// parse parses flags wherever they appear among the arguments, unlike
// flag.Parse, which stops at the first non-flag; so `token nhs --data x`
// works. It returns the positional arguments. Everything after "--" is
// positional.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// parseFlags is fs.Parse with its errors, other than a request for help,
// marked as usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError(err.Error())
}

// splitMask turns "a, b" into [a b]; "" gives nil, meaning no mask.
func splitMask(s string) []string {
	var paths []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			paths = append(paths, p)
		}
	}
	return paths
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}
