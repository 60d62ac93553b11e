package boltstore

import (
	"os"
	"path/filepath"
	"testing"
)

// CrashImage copies the data file and the journal of an open store, as a
// crash would leave them: no checkpoint, no close. Journalled events touch
// only the journal, and the copy is taken between commits. damage, when
// set, changes the journal's bytes first.
func CrashImage(t *testing.T, path string, damage func(journal []byte)) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "crashed.db")
	for _, suffix := range []string{"", JournalSuffix} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if suffix != "" && damage != nil {
			damage(b)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}
