package boltstore_test

import (
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/boltstore"
)

// auditedStore writes a plan, an update and two read events, closes the
// store and returns its file: 4 audit events.
func auditedStore(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "careplan.db")
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	actor := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg}
	ev := func() *careplanv1.AuditEvent {
		return &careplanv1.AuditEvent{Subject: "nurse-1", OrgCode: fixture.TrustOrg}
	}
	p, err := s.Create(ctx, store.Write{Plan: fixture.Plan(fixture.NHSNumber(1)), Actor: actor, Audit: ev()})
	if err != nil {
		t.Fatal(err)
	}
	p.WhatMatters = "changed"
	if _, err := s.Update(ctx, store.Write{Plan: p, MatchEtag: p.GetEtag(), Actor: actor, Audit: ev()}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, ev(), ev()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// tamper copies the store file and applies change to it.
func tamper(t *testing.T, src string, change func(b *bolt.Bucket) error) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "tampered.db")
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	out.Close()
	db, err := bolt.Open(dst, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return change(tx.Bucket([]byte("audit"))) }); err != nil {
		t.Fatal(err)
	}
	return dst
}

func key(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// rewrite changes event seq's outcome, as someone hiding a denial would.
func rewrite(seq uint64) func(b *bolt.Bucket) error {
	return func(b *bolt.Bucket) error {
		ev := &careplanv1.AuditEvent{}
		if err := proto.Unmarshal(b.Get(key(seq)), ev); err != nil {
			return err
		}
		ev.Outcome = "OK-" + ev.GetOutcome()
		body, err := proto.Marshal(ev)
		if err != nil {
			return err
		}
		return b.Put(key(seq), body)
	}
}

func TestVerifyAudit(t *testing.T) {
	path := auditedStore(t)
	n, err := boltstore.VerifyAudit(path)
	if err != nil || n != 4 {
		t.Fatalf("VerifyAudit(untouched) = %d, %v; want 4 events, no error", n, err)
	}
	tests := []struct {
		name   string
		change func(b *bolt.Bucket) error
		want   string
	}{
		{"event 2 altered", rewrite(2), "between sequence 2 and 3"},
		{"last event altered", rewrite(4), "recorded head does not match"},
		{"event 3 removed", func(b *bolt.Bucket) error { return b.Delete(key(3)) }, "expected sequence 3"},
		{"last event removed", func(b *bolt.Bucket) error { return b.Delete(key(4)) }, "recorded head does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := boltstore.VerifyAudit(tamper(t, path, tc.change))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyAudit(tampered) = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
