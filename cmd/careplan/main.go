// Command careplan is the command-line client for the careplan service: it
// reads and writes care plans as JSON, so an engineer or a script can use the
// service without writing Go or crafting grpcurl calls.
//
// It talks to $CAREPLAN_ADDR (default 127.0.0.1:50051) with the bearer token
// in $CAREPLAN_TOKEN. Run `careplan -h` for the commands.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command, with its inputs and outputs passed in so tests
// can drive it. It returns the exit status: 0, 1 for a failed call, 2 for a
// usage error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	return e.exit(e.dispatch(ctx, args))
}
