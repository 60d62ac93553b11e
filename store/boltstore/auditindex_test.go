package boltstore_test

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// listNHS pages through one plan's audit events, 100 at a time.
func listNHS(t *testing.T, s store.Store, nhs string) []int64 {
	t.Helper()
	var seqs []int64
	q := store.AuditQuery{NhsNumber: nhs, Limit: 100}
	for {
		evs, next, err := s.ListAudit(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.GetNhsNumber() != nhs {
				t.Fatalf("event %d is about another plan", ev.GetSequence())
			}
			seqs = append(seqs, ev.GetSequence())
		}
		if next == 0 {
			return seqs
		}
		q.AfterSequence = next
	}
}

// TestAuditIndexAcrossEpochs: one plan's events, spread over several index
// epochs and interleaved with another plan's, come back complete and in
// order, page by page.
func TestAuditIndexAcrossEpochs(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "careplan.db"))
	a, b := fixture.NHSNumber(1), fixture.NHSNumber(2)
	var batch []*careplanv1.AuditEvent
	var wantA []int64
	for i := 1; i <= 3500; i++ {
		nhs := b
		if i%3 == 0 {
			nhs = a
			wantA = append(wantA, int64(i))
		}
		batch = append(batch, &careplanv1.AuditEvent{NhsNumber: nhs, Outcome: "OK"})
		if len(batch) == 500 {
			if err := s.AppendAudit(context.Background(), batch...); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	got := listNHS(t, s, a)
	if len(got) != len(wantA) {
		t.Fatalf("plan a: %d events, want %d", len(got), len(wantA))
	}
	for i := range got {
		if got[i] != wantA[i] {
			t.Fatalf("plan a: event %d is sequence %d, want %d", i, got[i], wantA[i])
		}
	}
	if n := len(listNHS(t, s, fixture.NHSNumber(3))); n != 0 {
		t.Fatalf("a plan with no events has %d", n)
	}
}

// TestMigrateSchema1: a file written with schema 1 (audit_by_nhs keyed by
// nhs_number + sequence) is reindexed on open.
func TestMigrateSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careplan.db")
	s := open(t, path)
	nhs := fixture.NHSNumber(1)
	for range 3 {
		if err := s.AppendAudit(context.Background(), &careplanv1.AuditEvent{NhsNumber: nhs, Outcome: "OK"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Rewrite the index in the old layout and mark the file schema 1.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("audit_by_nhs")); err != nil {
			return err
		}
		idx, err := tx.CreateBucket([]byte("audit_by_nhs"))
		if err != nil {
			return err
		}
		if err := tx.Bucket([]byte("audit")).ForEach(func(k, v []byte) error {
			ev := &careplanv1.AuditEvent{}
			if err := proto.Unmarshal(v, ev); err != nil {
				return err
			}
			return idx.Put(binary.BigEndian.AppendUint64([]byte(ev.GetNhsNumber()), binary.BigEndian.Uint64(k)), nil)
		}); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s2 := open(t, path)
	if got := listNHS(t, s2, nhs); len(got) != 3 {
		t.Fatalf("after migration: %d events for the plan, want 3", len(got))
	}
}
