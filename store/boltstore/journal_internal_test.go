package boltstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// groupOf frames bodies, whose first event has sequence first, as one
// journal group.
func groupOf(first uint64, bodies ...[]byte) []byte {
	buf := startGroup(nil)
	for _, b := range bodies {
		buf = appendRecord(buf, b)
	}
	sealGroup(buf, len(bodies), first)
	return buf
}

func writeJournal(t *testing.T, parts ...[]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "j")
	if err := os.WriteFile(path, append(bytes.Join(parts, nil), make([]byte, 64)...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var testStoreID = []byte("0123456789abcdef")

func TestReadJournalStopsAtABrokenLink(t *testing.T) {
	// Events 1-3 written; then a write of 3-5 whose sync failed (so 3 was
	// numbered again by the next, successful write of 3 alone). What
	// follows the new 3 is left from the failed write: the right sequence,
	// the wrong hash.
	good := chained(t, 0, nil, "kept", 3)
	sum := sha256.Sum256(good[1])
	failed := chained(t, 2, sum[:], "failed", 3)

	t.Run("groups", func(t *testing.T) {
		failedGroup := groupOf(3, failed...)
		rewritten := groupOf(3, good[2])
		path := writeJournal(t, headerFor(testStoreID), groupOf(1, good[:2]...), rewritten, failedGroup[len(rewritten):])
		recs, lost, err := readJournal(path, testStoreID, 0)
		if err != nil || len(lost) != 0 || len(recs) != 3 || recs[2].seq != 3 {
			t.Fatalf("read %d records, lost %v, %v; want the 3 kept ones", len(recs), lost, err)
		}
		// The same file read for another data file holds nothing.
		if recs, _, err := readJournal(path, []byte("another store id"), 0); err != nil || len(recs) != 0 {
			t.Fatalf("journal of another store: %d records, %v; want none", len(recs), err)
		}
	})
	t.Run("format 1", func(t *testing.T) {
		var buf []byte
		for _, b := range good {
			buf = appendRecord(buf, b)
		}
		// The failed write had put 3, 4, 5 after 2; the successful one
		// then rewrote 3 in the same place.
		buf = appendRecord(buf, failed[1])
		buf = appendRecord(buf, failed[2])
		recs, lost, err := readJournal(writeJournal(t, header(journalMagicV1, testStoreID), buf), testStoreID, 0)
		if err != nil || len(lost) != 0 || len(recs) != 3 || recs[2].seq != 3 {
			t.Fatalf("read %d records, lost %v, %v; want the 3 kept ones", len(recs), lost, err)
		}
	})
}

// TestReadJournalDamagedGroup: a damaged group is dropped as torn when it
// is the last, and its events are reported lost when an intact group of
// later events lies beyond it.
func TestReadJournalDamagedGroup(t *testing.T) {
	evs := chained(t, 0, nil, "nurse-1", 5)
	g1, g2, g3 := groupOf(1, evs[:2]...), groupOf(3, evs[2]), groupOf(4, evs[3:]...)
	damaged := func(g []byte) []byte {
		d := bytes.Clone(g)
		d[len(d)-1] ^= 0xff // the last byte of its last event
		return d
	}
	sum := sha256.Sum256(evs[2])
	head3 := sum[:]
	stale := groupOf(1, evs[0]) // from before a rewind
	fork := groupOf(4, chained(t, 3, []byte("another chain"), "fork", 1)...)
	badLength := bytes.Clone(g2)
	badLength[0] ^= 0x40

	tests := []struct {
		name      string
		groups    [][]byte
		wantSeqs  []uint64
		wantLost  []seqRange
		afterSeq  uint64 // where the data file ends
		afterHead []byte
		wantRest  int    // records after it to replay
		wantErr   string // or the error after gives
	}{
		{"intact", [][]byte{g1, g2, g3}, []uint64{1, 2, 3, 4, 5}, nil, 0, nil, 5, ""},
		{"last group torn", [][]byte{g1, g2, damaged(g3)}, []uint64{1, 2, 3}, nil, 0, nil, 3, ""},
		{"middle group damaged", [][]byte{g1, damaged(g2), g3}, []uint64{1, 2, 4, 5}, []seqRange{{3, 4}}, 0, nil, 0, "events 3 to 3 were acknowledged"},
		{"damaged group the data file holds", [][]byte{g1, damaged(g2), g3}, []uint64{1, 2, 4, 5}, nil, 3, head3, 2, ""},
		{"first group damaged", [][]byte{damaged(g1), g2, g3}, []uint64{3, 4, 5}, []seqRange{{1, 3}}, 0, nil, 0, "events 1 to 2 were acknowledged"},
		{"damaged group before a stale one", [][]byte{g1, damaged(g2), stale}, []uint64{1, 2}, nil, 0, nil, 2, ""},
		{"a group of another chain after the end", [][]byte{g1, g2, fork}, []uint64{1, 2, 3}, nil, 0, nil, 3, ""},
		{"group zeroed", [][]byte{g1, make([]byte, len(g2)), g3}, []uint64{1, 2, 4, 5}, []seqRange{{3, 4}}, 0, nil, 0, "events 3 to 3 were acknowledged"},
		{"group length damaged", [][]byte{g1, badLength, g3}, []uint64{1, 2, 4, 5}, []seqRange{{3, 4}}, 0, nil, 0, "events 3 to 3 were acknowledged"},
		{"two groups damaged", [][]byte{damaged(g1), damaged(g2), g3}, []uint64{4, 5}, []seqRange{{1, 4}}, 0, nil, 0, "events 1 to 3 were acknowledged"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeJournal(t, append([][]byte{headerFor(testStoreID)}, tc.groups...)...)
			recs, lost, err := readJournal(path, testStoreID, tc.afterSeq)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for _, r := range recs {
				seqs = append(seqs, r.seq)
			}
			if !slices.Equal(seqs, tc.wantSeqs) || !slices.Equal(lost, tc.wantLost) {
				t.Fatalf("read events %v, lost %v; want %v, lost %v", seqs, lost, tc.wantSeqs, tc.wantLost)
			}
			rest, err := after(recs, lost, tc.afterSeq, tc.afterHead)
			if tc.wantErr == "" {
				if err != nil || len(rest) != tc.wantRest {
					t.Fatalf("after the data file's %d events: %d records, %v; want %d", tc.afterSeq, len(rest), err, tc.wantRest)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("after: %v; want an error saying %q", err, tc.wantErr)
			}
		})
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

	// The journal holds every event, one group each. Damage to a group
	// whose event bbolt already holds loses nothing; damage to one it
	// lacks stops the store from opening, and says which events.
	for _, damage := range []int{0, 3, int(n - left + 2)} {
		img := CrashImage(t, path, func(b []byte) {
			if damage > 0 {
				damageGroup(t, b, damage)
			}
		})
		if damage > int(n-left) {
			want := fmt.Sprintf("events %d to %d were acknowledged", damage, damage)
			if _, err := VerifyAudit(img); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("VerifyAudit with event %d damaged: %v; want %q", damage, err, want)
			}
			if c, err := Open(img, Options{MappedBytes: -1}); err == nil || !strings.Contains(err.Error(), want) {
				if err == nil {
					c.Close()
				}
				t.Fatalf("Open with event %d damaged: %v; want %q", damage, err, want)
			}
			continue
		}
		if got, err := VerifyAudit(img); err != nil || got != n {
			t.Fatalf("VerifyAudit of the crash image (damaged group %d): %d events, %v; want %d", damage, got, err, n)
		}
		c, err := Open(img, Options{MappedBytes: -1})
		if err != nil {
			t.Fatal(err)
		}
		evs, _, err := c.ListAudit(context.Background(), store.AuditQuery{Limit: 100})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != n {
			t.Fatalf("%d events after replay (damaged group %d), want %d", len(evs), damage, n)
		}
		for i, ev := range evs {
			if ev.GetSequence() != int64(i+1) {
				t.Fatalf("event %d has sequence %d", i, ev.GetSequence())
			}
		}
	}
}

// damageGroup flips a byte in the last record of the k-th group (from 1)
// of the journal file b.
func damageGroup(t *testing.T, b []byte, k int) {
	t.Helper()
	off := journalHeader
	for range k - 1 {
		off += groupHeader + int(binary.BigEndian.Uint32(b[off:]))
	}
	end := off + groupHeader + int(binary.BigEndian.Uint32(b[off:]))
	if end > len(b) || end == off+groupHeader {
		t.Fatalf("the journal has no group %d", k)
	}
	b[end-1] ^= 0xff
}

// TestOpenReplaysFormat1Journal: a store that crashed under a build writing
// journal format 1 keeps its journalled events when a newer build opens it.
func TestOpenReplaysFormat1Journal(t *testing.T) {
	s, path := openStore(t, Options{MappedBytes: -1})
	var id []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		id = bytes.Clone(tx.Bucket(bucketMeta).Get(keyStoreID))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	buf := header(journalMagicV1, id)
	for _, b := range chained(t, 0, nil, "nurse-1", 3) {
		buf = appendRecord(buf, b)
	}
	if err := os.WriteFile(path+JournalSuffix, append(buf, make([]byte, 64)...), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path, Options{MappedBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	evs, _, err := c.ListAudit(context.Background(), store.AuditQuery{Limit: 10})
	if err != nil || len(evs) != 3 || evs[2].GetSubject() != "nurse-1" {
		t.Fatalf("after opening: %d events, %v; want the 3 journalled", len(evs), err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := VerifyAudit(path); err != nil || n != 3 {
		t.Fatalf("VerifyAudit: %d, %v", n, err)
	}
}

func okEvent() *careplanv1.AuditEvent {
	return &careplanv1.AuditEvent{Subject: "nurse-1", Outcome: "OK"}
}

// appendAcknowledged journals n events, one group each.
func appendAcknowledged(t *testing.T, s *Store, n int) {
	t.Helper()
	for range n {
		if err := s.AppendAudit(context.Background(), okEvent()); err != nil {
			t.Fatal(err)
		}
	}
}

// failJournalWrite makes the journal's syncs fail, and journals a group of
// two events that their caller is told failed. The sync stays failing.
// The loop is idle between calls, and each call's reply orders the change
// after its last use of the journal.
func failJournalWrite(t *testing.T, s *Store) {
	t.Helper()
	s.journal.sync = func(*os.File) error { return errors.New("injected sync failure") }
	if err := s.AppendAudit(context.Background(), okEvent(), okEvent()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("AppendAudit with a failing sync = %v, want ErrUnavailable", err)
	}
}

// TestFailedJournalWriteThenRewind: a group whose sync failed is whole on
// disk, and bbolt then gives its sequence numbers to other events. A crash
// right after the rewind that bbolt's commit makes must still open: the
// failed group is never read back.
func TestFailedJournalWriteThenRewind(t *testing.T) {
	s, path := openStore(t, Options{MappedBytes: -1})
	ctx := context.Background()
	appendAcknowledged(t, s, 3)
	failJournalWrite(t, s)
	s.journal.sync = fdatasync
	actor := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg}
	if _, err := s.Create(ctx, store.Write{Plan: fixture.Plan(fixture.NHSNumber(1)), Actor: actor, Audit: okEvent()}); err != nil {
		t.Fatal(err)
	}
	img := CrashImage(t, path, nil)
	if n, err := VerifyAudit(img); err != nil || n != 4 {
		t.Fatalf("VerifyAudit of the crash image: %d events, %v; want 4", n, err)
	}
	c, err := Open(img, Options{MappedBytes: -1})
	if err != nil {
		t.Fatalf("Open after a failed journal write and a rewind: %v", err)
	}
	defer c.Close()
	if evs, _, err := c.ListAudit(ctx, store.AuditQuery{Limit: 10}); err != nil || len(evs) != 4 {
		t.Fatalf("after reopening: %d events, %v; want the 4 acknowledged", len(evs), err)
	}
}

// TestFailedJournalWriteThenFlush: after a failed journal write, a commit
// that adds no event of its own (a flush before the audit log is read)
// checkpoints the acknowledged events and rewinds. A crash then must not
// bring back the failed group's events, whose callers were told
// UNAVAILABLE: it lies intact beyond the zeroed start, and carries on the
// chain from exactly what bbolt holds.
func TestFailedJournalWriteThenFlush(t *testing.T) {
	for _, rewindFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("rewind fails %v", rewindFails), func(t *testing.T) { failedWriteThenFlush(t, rewindFails) })
	}
}

// failedWriteThenFlush runs TestFailedJournalWriteThenFlush. When
// rewindFails, the sync that should make the rewind's zeros durable fails
// too: the journal must then go on where it was, so that its next group
// overwrites the failed one, and the store must keep working.
func failedWriteThenFlush(t *testing.T, rewindFails bool) {
	s, path := openStore(t, Options{MappedBytes: -1})
	ctx := context.Background()
	appendAcknowledged(t, s, 3)
	failJournalWrite(t, s)
	if !rewindFails {
		s.journal.sync = fdatasync
	}
	failedAt := s.journal.off
	if err := s.flushJournal(ctx); err != nil {
		t.Fatal(err)
	}
	want := 3
	if rewindFails {
		if s.journal.off != failedAt {
			t.Fatalf("after a failed rewind the journal goes on at %d, want %d (where the write failed)", s.journal.off, failedAt)
		}
		s.journal.sync = fdatasync
		if err := s.AppendAudit(ctx, okEvent()); err != nil {
			t.Fatal(err)
		}
		want = 4
	}
	img := CrashImage(t, path, nil)
	c, err := Open(img, Options{MappedBytes: -1})
	if err != nil {
		t.Fatalf("Open after a failed journal write and a flush: %v", err)
	}
	defer c.Close()
	if evs, _, err := c.ListAudit(ctx, store.AuditQuery{Limit: 10}); err != nil || len(evs) != want {
		t.Fatalf("after reopening: %d events, %v; want the %d acknowledged", len(evs), err, want)
	}
}
