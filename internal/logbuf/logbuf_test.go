package logbuf

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is the underlying writer: it counts the writes it gets.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuffer) snapshot() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

func TestLinesAreBatchedAndCloseWritesTheRest(t *testing.T) {
	var out lockedBuffer
	w := New(&out, 64<<10, time.Hour) // no periodic flush in this test
	log := slog.New(Handler(slog.NewJSONHandler(w, nil), w, slog.LevelWarn))
	for i := range 100 {
		log.Info("finished call", "n", i)
	}
	if got, writes := out.snapshot(); got != "" || writes != 0 {
		t.Fatalf("INFO lines were written before any flush: %d writes", writes)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, writes := out.snapshot()
	if n := strings.Count(got, "\n"); n != 100 {
		t.Fatalf("Close wrote %d lines, want 100", n)
	}
	if writes != 1 {
		t.Errorf("100 lines took %d writes, want 1", writes)
	}
}

func TestWarningsAreWrittenAtOnce(t *testing.T) {
	var out lockedBuffer
	w := New(&out, 64<<10, time.Hour)
	defer w.Close()
	log := slog.New(Handler(slog.NewJSONHandler(w, nil), w, slog.LevelWarn)).With("component", "store")
	log.Info("before")
	log.WithGroup("g").Error("store cannot write")
	got, _ := out.snapshot()
	if !strings.Contains(got, `"msg":"before"`) || !strings.Contains(got, `"msg":"store cannot write"`) || !strings.Contains(got, `"component":"store"`) {
		t.Fatalf("an error did not flush itself and the lines before it: %q", got)
	}
}

func TestPeriodicFlush(t *testing.T) {
	var out lockedBuffer
	w := New(&out, 64<<10, 10*time.Millisecond)
	defer w.Close()
	if _, err := w.Write([]byte("line\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _ := out.snapshot(); got == "line\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a buffered line was not written out by the periodic flush")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseTwiceAndWriteAfterClose(t *testing.T) {
	var out lockedBuffer
	w := New(&out, 16, time.Hour)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A line longer than the buffer goes straight through.
	if _, err := w.Write([]byte("a line longer than sixteen bytes\n")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := out.snapshot(); got != "a line longer than sixteen bytes\n" {
		t.Fatalf("got %q", got)
	}
}
