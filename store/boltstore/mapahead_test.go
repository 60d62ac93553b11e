package boltstore

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/careplan/careplan/internal/fixture"
	"github.com/careplan/careplan/store"
)

// blockingWriter holds a backup's read transaction open: its first Write
// waits until release is closed.
type blockingWriter struct {
	started chan struct{}
	release chan struct{}
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	select {
	case <-w.started:
	default:
		close(w.started)
	}
	<-w.release
	return len(p), nil
}

// TestWritesGrowTheFileDuringABackup: a backup holds a bbolt read
// transaction for as long as its client takes to read it. Writes that grow
// the file must not wait for it to end, which they do when bbolt has to
// remap the file; Options.MapAhead maps ahead so that it need not.
func TestWritesGrowTheFileDuringABackup(t *testing.T) {
	s, path := openStore(t, Options{MappedBytes: -1, MapAhead: 1 << 30})
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	w := &blockingWriter{started: make(chan struct{}), release: make(chan struct{})}
	backupDone := make(chan error, 1)
	go func() {
		_, err := s.Backup(context.Background(), w, func(int64) {})
		backupDone <- err
	}()
	<-w.started

	const plans = 400 // about 8 KB each on disk: the file grows several MB
	wrote := make(chan error, 1)
	go func() {
		for i := range plans {
			if _, err := s.Create(context.Background(), store.Write{Plan: fixture.TrustPlan(fixture.NHSNumber(i))}); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		close(w.release)
		t.Fatal("writes that grow the file waited for the open backup")
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() < before.Size()+2<<20 {
		t.Fatalf("file grew from %d to %d bytes: too little to need more mapping", before.Size(), after.Size())
	}
	close(w.release)
	if err := <-backupDone; err != nil {
		t.Fatalf("backup: %v", err)
	}
	for i := range plans {
		if _, err := s.GetStored(context.Background(), fixture.NHSNumber(i), fixture.TrustOrg); err != nil {
			t.Fatalf("plan %d: %v", i, err)
		}
	}
}
