package boltstore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/boltstore"
)

func readEvent(i int) *careplanv1.AuditEvent {
	return &careplanv1.AuditEvent{Subject: "nurse-1", OrgCode: fixture.TrustOrg, Method: "/careplan.v1.CarePlanService/GetCarePlan",
		NhsNumber: fixture.NHSNumber(i % 5), Outcome: "OK"}
}

func appendReads(t *testing.T, s store.Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.AppendAudit(context.Background(), readEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func crashImage(t *testing.T, path string) string { return boltstore.CrashImage(t, path, nil) }

// auditSequences lists every event's sequence through ListAudit.
func auditSequences(t *testing.T, s store.Store) []int64 {
	t.Helper()
	var seqs []int64
	for _, ev := range allEvents(t, s, "") {
		seqs = append(seqs, ev.GetSequence())
	}
	return seqs
}

func allEvents(t *testing.T, s store.Store, nhs string) []*careplanv1.AuditEvent {
	t.Helper()
	var out []*careplanv1.AuditEvent
	q := store.AuditQuery{NhsNumber: nhs, Limit: 100}
	for {
		evs, next, err := s.ListAudit(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
		if next == 0 {
			return out
		}
		q.AfterSequence = next
	}
}

func wantSequences(t *testing.T, got []int64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d events, want %d", len(got), n)
	}
	for i, seq := range got {
		if seq != int64(i+1) {
			t.Fatalf("event %d has sequence %d", i, seq)
		}
	}
}

func TestJournalSurvivesCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careplan.db")
	s := open(t, path)
	// One event in bbolt, with a plan write.
	actor := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg}
	if _, err := s.Create(context.Background(), store.Write{Plan: fixture.Plan(fixture.NHSNumber(0)), Actor: actor, Audit: readEvent(0)}); err != nil {
		t.Fatal(err)
	}
	appendReads(t, s, 0, 30) // thirty in the journal only
	img := crashImage(t, path)

	// Offline, the chain runs on through the journal.
	if n, err := boltstore.VerifyAudit(img); err != nil || n != 31 {
		t.Fatalf("VerifyAudit of the crash image: %d events, %v; want 31", n, err)
	}
	c := open(t, img)
	wantSequences(t, auditSequences(t, c), 31)
	// The per-plan index holds replayed events too.
	if got := len(allEvents(t, c, fixture.NHSNumber(1))); got != 6 {
		t.Fatalf("events for one plan: %d, want 6", got)
	}
	// The store carries on the chain after the replay.
	appendReads(t, c, 30, 5)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := boltstore.VerifyAudit(img); err != nil || n != 36 {
		t.Fatalf("VerifyAudit after reopening: %d events, %v; want 36", n, err)
	}
}

func TestJournalTornRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careplan.db")
	s := open(t, path)
	appendReads(t, s, 0, 10)
	img := crashImage(t, path)
	// Cut the last record short, as a crash during its write would: it was
	// never acknowledged, so it is dropped and nothing else is.
	b, err := os.ReadFile(img + boltstore.JournalSuffix)
	if err != nil {
		t.Fatal(err)
	}
	end := strings.LastIndex(string(b), fixture.NHSNumber(9%5))
	b[end] ^= 0xff
	if err := os.WriteFile(img+boltstore.JournalSuffix, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := open(t, img)
	wantSequences(t, auditSequences(t, c), 9)
}

func TestJournalRewindLeavesOldRecordsUnread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careplan.db")
	s := open(t, path)
	appendReads(t, s, 0, 40)
	auditSequences(t, s) // reading the log checkpoints; the journal rewinds
	appendReads(t, s, 40, 3)
	img := crashImage(t, path)
	if n, err := boltstore.VerifyAudit(img); err != nil || n != 43 {
		t.Fatalf("VerifyAudit: %d events, %v; want 43", n, err)
	}
	wantSequences(t, auditSequences(t, open(t, img)), 43)
}

func TestJournalFullCheckpoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careplan.db")
	s, err := boltstore.Open(path, boltstore.Options{JournalBytes: 2048, CheckpointEvents: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	appendReads(t, s, 0, 100) // about 150 bytes each: many times the journal
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := boltstore.VerifyAudit(path); err != nil || n != 100 {
		t.Fatalf("VerifyAudit: %d events, %v; want 100", n, err)
	}
	if fi, err := os.Stat(path + boltstore.JournalSuffix); err != nil || fi.Size() != 2048 {
		t.Fatalf("journal: %v, %v; want 2048 bytes", fi, err)
	}
}

func TestJournalBelongsToItsDataFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careplan.db")
	s := open(t, path)
	appendReads(t, s, 0, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	backup := crashImage(t, path) // all 3 events in bbolt

	// A restore that keeps the newer journal beside the older data file:
	// the journal continues the chain, so it is replayed.
	s = open(t, path)
	appendReads(t, s, 3, 2)
	newer := crashImage(t, path) // events 4 and 5 only in the journal
	_ = s.Close()
	restored := crashImage(t, backup)
	if err := os.Rename(newer+boltstore.JournalSuffix, restored+boltstore.JournalSuffix); err != nil {
		t.Fatal(err)
	}
	c := open(t, restored)
	wantSequences(t, auditSequences(t, c), 5)
	_ = c.Close()

	// A journal of the same store that does not continue the data file's
	// chain (a plan write, event 4, went to bbolt after the backup) is
	// refused, naming the cause.
	s = open(t, path)
	actor := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg}
	if _, err := s.Create(context.Background(), store.Write{Plan: fixture.Plan(fixture.NHSNumber(0)), Actor: actor, Audit: readEvent(0)}); err != nil {
		t.Fatal(err)
	}
	appendReads(t, s, 6, 2)
	gap := crashImage(t, path)
	_ = s.Close()
	restored = crashImage(t, backup)
	if err := os.Rename(gap+boltstore.JournalSuffix, restored+boltstore.JournalSuffix); err != nil {
		t.Fatal(err)
	}
	_, err := boltstore.Open(restored, boltstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "does not continue the audit chain") {
		t.Fatalf("Open with a journal that skips events: %v", err)
	}

	// A journal left beside a new data file (the old one deleted) belongs to
	// another store: it is ignored, not replayed into the new one.
	fresh := filepath.Join(t.TempDir(), "careplan.db")
	old := crashImage(t, path)
	if err := os.Rename(old+boltstore.JournalSuffix, fresh+boltstore.JournalSuffix); err != nil {
		t.Fatal(err)
	}
	f := open(t, fresh)
	if seqs := auditSequences(t, f); len(seqs) != 0 {
		t.Fatalf("a new data file took %d events from an old journal", len(seqs))
	}
	appendReads(t, f, 0, 2)
	_ = f.Close()
	if n, err := boltstore.VerifyAudit(fresh); err != nil || n != 2 {
		t.Fatalf("VerifyAudit of the new file: %d, %v; want 2 events", n, err)
	}
}

func TestNoJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careplan.db")
	s, err := boltstore.Open(path, boltstore.Options{JournalBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	appendReads(t, s, 0, 5)
	wantSequences(t, auditSequences(t, s), 5)
	_ = s.Close()
	if _, err := os.Stat(path + boltstore.JournalSuffix); !os.IsNotExist(err) {
		t.Fatalf("journal file with JournalBytes -1: %v", err)
	}
}
