package boltstore_test

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/boltstore"
)

// TestMigrateSchema2: a file written with schema 2 has request keys but no
// requests_by_time; open indexes them, so they can be pruned.
func TestMigrateSchema2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careplan.db")
	s := open(t, path)
	ctx := context.Background()
	actor := &careplanv1.Actor{Subject: "nurse-1", OrgCode: fixture.TrustOrg, OrgType: careplanv1.Organisation_TYPE_NHS}
	for i := range 2 {
		w := store.Write{Plan: fixture.Plan(fixture.NHSNumber(i)), Actor: actor, RequestKey: "nurse-1/create/" + fixture.NHSNumber(i)}
		if _, err := s.Create(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setSchema(t, path, 2, func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("requests_by_time")) })

	s2 := open(t, path)
	n, err := s2.(store.RequestPruner).PruneRequests(ctx, time.Now(), 10)
	if n != 2 || err != nil {
		t.Fatalf("PruneRequests after migration = %d, %v; want both keys", n, err)
	}
	if _, ok, err := s2.LookupRequest(ctx, "nurse-1/create/"+fixture.NHSNumber(0)); ok || err != nil {
		t.Fatalf("LookupRequest of a pruned key = %v, %v", ok, err)
	}
}

// TestNewerSchemaRefused: a file from a newer build is not opened, and the
// error says why.
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careplan.db")
	if err := open(t, path).Close(); err != nil {
		t.Fatal(err)
	}
	setSchema(t, path, 99, nil)
	s, err := boltstore.Open(path, boltstore.Options{})
	if err == nil {
		s.Close()
		t.Fatal("opened a file of schema 99")
	}
	if !strings.Contains(err.Error(), "schema version 99") {
		t.Fatalf("error %q does not name the file's schema version", err)
	}
}

// setSchema marks the file at path with schema version v, after changing it
// with fn (nil for no change), as an older or newer build would leave it.
func setSchema(t *testing.T, path string, v uint64, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if fn != nil {
			if err := fn(tx); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, v))
	})
	if err != nil {
		t.Fatal(err)
	}
}
