package boltstore

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// bbolt reads through a read-only shared mapping of the whole data file, and
// every page a read touches stays mapped. On a large store the process's RSS
// therefore grows towards the size of the file (5.4 GB on a store of a
// million plans) although those pages are only page cache. RSS is what
// dashboards and container limits show, and what the kernel's OOM killer
// ranks processes by. So, once the process's file-backed resident memory
// passes Options.MappedBytes, the store unmaps the data file's pages
// (MADV_DONTNEED). They stay in the page cache: the next read of one maps it
// again with a minor fault, and nothing is read from disk.

// trimLoop checks the mapped pages every interval until the store closes.
func (s *Store) trimLoop(limit int64, interval time.Duration) {
	defer close(s.trimStopped)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_, _ = s.trimMapped(limit) // a failure leaves pages mapped: RSS, not data
		case <-s.closing:
			return
		}
	}
}

// trimMapped unmaps the data file's pages if the process's file-backed
// resident memory is over limit, and reports whether it did.
func (s *Store) trimMapped(limit int64) (bool, error) {
	n, err := fileResident()
	if err != nil || n <= limit {
		return false, err
	}
	start := time.Now()
	err = s.db.View(func(tx *bolt.Tx) error {
		// While a read transaction is open bbolt cannot remap the file, so
		// the range is still the data file's mapping.
		return dropPages(s.db.Info().Data, tx.Size())
	})
	if o, ok := s.observer.(UnmapObserver); ok && err == nil {
		o.ObserveUnmap(time.Since(start))
	}
	return err == nil, err
}
