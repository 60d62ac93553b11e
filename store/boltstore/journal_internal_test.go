package boltstore

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"

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
