package boltstore

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/careplan/careplan/internal/fixture"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// chained returns n events continuing a chain that ends at (seq, head).
func chained(t *testing.T, seq uint64, head []byte, subject string, n int) (bodies [][]byte) {
	t.Helper()
	for range n {
		seq++
		body, err := store.MarshalAudit(&careplanv1.AuditEvent{Sequence: int64(seq), PrevHash: head, Subject: subject})
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		head = sum[:]
		bodies = append(bodies, body)
	}
	return bodies
}

func TestReadJournalStopsAtABrokenLink(t *testing.T) {
	// Events 1-3 written; then a write of 3-5 whose sync failed (so 3 was
	// numbered again by the next, successful write of 3 alone). The record
	// after the new 3 is the failed 4: the right sequence, the wrong hash.
	good := chained(t, 0, nil, "kept", 3)
	sum := sha256.Sum256(good[1])
	failed := chained(t, 2, sum[:], "failed", 3)
	id := []byte("0123456789abcdef")
	buf := headerFor(id)
	for _, b := range good {
		buf = appendRecord(buf, b)
	}
	// The failed write had put 3, 4, 5 after 2; the successful one then
	// rewrote 3 in the same place.
	tail := appendRecord(nil, failed[1])
	tail = appendRecord(tail, failed[2])
	buf = append(buf, tail...)
	path := filepath.Join(t.TempDir(), "j")
	if err := os.WriteFile(path, append(buf, make([]byte, 64)...), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, err := readJournal(path, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[2].seq != 3 {
		t.Fatalf("read %d records; want the 3 kept ones", len(recs))
	}
	// The same file read for another data file holds nothing.
	if recs, err := readJournal(path, []byte("another store id")); err != nil || len(recs) != 0 {
		t.Fatalf("journal of another store: %d records, %v; want none", len(recs), err)
	}
}

// TestBackgroundCheckpointThenCrash: a background checkpoint has moved the
// first events into bbolt while the journal still holds them and more. A
// crash image then replays only the events bbolt lacks: each sequence once,
// and the chain verifies.
func TestBackgroundCheckpointThenCrash(t *testing.T) {
	s, path := openStore(t, Options{CheckpointEvents: 10, MappedBytes: -1})
	const n = 15
	for i := range n {
		if err := s.AppendAudit(context.Background(), &careplanv1.AuditEvent{Subject: "nurse-1", NhsNumber: fixture.NHSNumber(i % 3), Outcome: "OK"}); err != nil {
			t.Fatal(err)
		}
	}
	// The checkpoint started at the tenth event; once it has finished, the
	// journal's count drops, and no transaction is running.
	deadline := time.Now().Add(10 * time.Second)
	for s.journaled.Load() == n {
		if time.Now().After(deadline) {
			t.Fatal("the background checkpoint did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	left := s.journaled.Load()
	if left == 0 || left >= n {
		t.Fatalf("%d events left in the journal, want some but not all", left)
	}
	var inBolt uint64
	if err := s.db.View(func(tx *bolt.Tx) error {
		inBolt = tx.Bucket(bucketAudit).Sequence()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inBolt != uint64(n-left) {
		t.Fatalf("bbolt holds events up to %d, want %d", inBolt, n-left)
	}

	img := filepath.Join(t.TempDir(), "crashed.db")
	for _, suffix := range []string{"", JournalSuffix} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(img+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := VerifyAudit(img); err != nil || got != n {
		t.Fatalf("VerifyAudit of the crash image: %d events, %v; want %d", got, err, n)
	}
	c, err := Open(img, Options{MappedBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	evs, _, err := c.ListAudit(context.Background(), store.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Fatalf("%d events after replay, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if ev.GetSequence() != int64(i+1) {
			t.Fatalf("event %d has sequence %d", i, ev.GetSequence())
		}
	}
}
