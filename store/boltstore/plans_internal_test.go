package boltstore

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/careplan/careplan/internal/fixture"
	"github.com/careplan/careplan/store"
)

// TestRelatedFromPlanEntry: GetStored answers relatedness from the plan's
// entry in plans, and from org_plans for an entry written before entries
// listed organisations.
func TestRelatedFromPlanEntry(t *testing.T) {
	s, _ := openStore(t, Options{MappedBytes: -1})
	p, err := s.Create(context.Background(), store.Write{Plan: fixture.TrustPlan(fixture.NHSNumber(1))})
	if err != nil {
		t.Fatal(err)
	}
	nhs := p.GetNhsNumber()
	check := func(when string) {
		t.Helper()
		for org, want := range map[string]bool{fixture.TrustOrg: true, "rxa": true, "ZZZ9": false, "": false} {
			sp, err := s.GetStored(context.Background(), nhs, org)
			if err != nil {
				t.Fatal(err)
			}
			if sp.Facts.Related != want {
				t.Errorf("%s: related(%q) = %v, want %v", when, org, sp.Facts.Related, want)
			}
		}
	}
	check("entry with organisations")
	// An entry as older builds wrote it: the version alone.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPlans).Put([]byte(nhs), u64(uint64(p.GetVersion())))
	}); err != nil {
		t.Fatal(err)
	}
	check("version-only entry")
}

// openStore opens a store in a new directory, closed when the test ends.
func openStore(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "careplan.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}
