package boltstore

import (
	"context"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"

	"github.com/careplan/careplan/store"
)

// Backup implements store.Backuper with tx.WriteTo inside one read
// transaction: the snapshot is consistent and writers carry on (though a
// write that must grow the file waits for the snapshot to finish).
func (s *Store) Backup(ctx context.Context, w io.Writer, size func(int64)) (int64, error) {
	// Every event acknowledged before the backup began is in it.
	if err := s.flushJournal(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		size(tx.Size())
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	if err != nil && ctx.Err() == nil {
		return n, fmt.Errorf("%w: backup: %v", store.ErrUnavailable, err)
	}
	return n, err
}

// ctxWriter stops a backup whose caller has gone.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
