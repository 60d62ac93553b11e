package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/boltstore"
	"github.com/careplan/careplan/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) store.Store {
			return open(t, filepath.Join(t.TempDir(), "careplan.db"))
		},
		Reopen: func(t *testing.T, s store.Store) store.Store {
			path := s.(*boltstore.Store).DB().Path()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, path)
		},
	})
}

func open(t *testing.T, path string) store.Store {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
