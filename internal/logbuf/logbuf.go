// Package logbuf batches log output. A busy server logs one line per call;
// written one by one that is a write(2) per call, and, when stderr is a pipe
// to a log collector, a wake-up of the collector per call too. A Writer
// gathers lines in memory and writes them out at a fixed interval, when its
// buffer fills, on Flush and on Close. The slog handler from Handler flushes
// at once after a warning or an error, so those are never held back.
//
// The price is that a process killed outright (SIGKILL, a crash outside the
// recovered handlers) loses at most one interval of INFO lines. Logs here are
// operational: the durable record of who did what is the audit trail.
package logbuf

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Writer is an io.Writer that buffers whole writes and hands them to the
// underlying writer in batches. It is safe for concurrent use.
type Writer struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// New returns a Writer over out that flushes at least every interval and
// whenever size bytes are waiting. Close stops it.
func New(out io.Writer, size int, interval time.Duration) *Writer {
	w := &Writer{w: bufio.NewWriterSize(out, size), stop: make(chan struct{}), done: make(chan struct{})}
	go w.flushEvery(interval)
	return w
}

func (w *Writer) flushEvery(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_ = w.Flush()
		case <-w.stop:
			return
		}
	}
}

// Write buffers p. A line longer than the buffer goes straight through.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// Flush writes out everything buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Flush()
}

// Close stops the periodic flush and writes out what is left. Writes after
// Close are still accepted and go out on the next Flush.
func (w *Writer) Close() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.Flush()
}

// Handler wraps h, which writes to w, so that a record at level or above is
// written out before Handle returns.
func Handler(h slog.Handler, w *Writer, level slog.Level) slog.Handler {
	return &flushing{Handler: h, w: w, level: level}
}

type flushing struct {
	slog.Handler
	w     *Writer
	level slog.Level
}

func (f *flushing) Handle(ctx context.Context, r slog.Record) error {
	err := f.Handler.Handle(ctx, r)
	if r.Level >= f.level {
		if ferr := f.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (f *flushing) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &flushing{Handler: f.Handler.WithAttrs(attrs), w: f.w, level: f.level}
}

func (f *flushing) WithGroup(name string) slog.Handler {
	return &flushing{Handler: f.Handler.WithGroup(name), w: f.w, level: f.level}
}
