package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// runWatch prints the change feed until interrupted. With --state it is a
// restartable consumer: each event is printed before its revision is saved,
// so a crash between the two repeats at most that one event, and none is
// ever skipped.
func runWatch(ctx context.Context, e *env, args []string) error {
	fs := e.flags("watch")
	from := fs.Int64("from", 0, "print the events after revision `N`; overrides --state")
	state := fs.String("state", "", "`FILE` holding the last revision printed: resumed from, and rewritten after each event")
	if err := noArgs(fs, args); err != nil {
		return err
	}
	start := *from
	if *state != "" && !isSet(fs, "from") {
		var err error
		if start, err = readState(*state); err != nil {
			return err
		}
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	_, err = c.Watch(e.callContext(ctx), start, func(ev *careplanv1.CarePlanEvent) error {
		if err := e.printLine(ev); err != nil || *state == "" {
			return err
		}
		return saveState(*state, ev.GetRevision())
	})
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil // interrupted: the normal way to stop a watch
	}
	return err
}

// readState returns the revision saved in path, or 0 if there is no file
// yet (a first run starts from the beginning of the feed).
func readState(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, inputError{err}
	}
	rev, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || rev < 0 {
		return 0, inputError{fmt.Errorf("%s: not a saved revision: %q", path, b)}
	}
	return rev, nil
}

// saveState replaces path with rev, atomically.
func saveState(path string, rev int64) error {
	return writeFileAtomic(path, 0o600, func(w io.Writer) error {
		_, err := fmt.Fprintln(w, rev)
		return err
	})
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
