package postgres

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// watch runs until Close. It keeps a dedicated connection LISTENing for
// revisions that any replica commits and wakes WaitRevision callers; when
// no notification arrives within PollInterval, or the connection is lost,
// it reads the revision instead, so a lost notification cannot stall a
// watcher. The same poll tells the health callback whether the database is
// reachable again after failures.
func (s *Store) watch() {
	defer close(s.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for {
		if conn == nil {
			conn = s.listen(ctx)
			s.poll(ctx) // commits made before LISTEN took effect
		}
		woke := false
		if conn != nil {
			woke = s.notified(ctx, conn)
			if conn.IsClosed() {
				conn = nil
			}
		} else {
			select {
			case <-ctx.Done():
			case <-time.After(s.pollInterval):
			}
		}
		if ctx.Err() != nil {
			return
		}
		if !woke {
			s.poll(ctx)
		}
	}
}

// listen opens the dedicated connection and LISTENs, or returns nil.
func (s *Store) listen(ctx context.Context) *pgx.Conn {
	conn, err := pgx.ConnectConfig(ctx, s.listenCfg.ConnConfig.Copy())
	if err != nil {
		return nil
	}
	if _, err := conn.Exec(ctx, "LISTEN "+revisionChannel); err != nil {
		_ = conn.Close(context.Background())
		return nil
	}
	return conn
}

// notified waits up to PollInterval for a notification and publishes the
// revision it carries. A timeout leaves the connection usable; any other
// error closes it.
func (s *Store) notified(ctx context.Context, conn *pgx.Conn) bool {
	wctx, cancel := context.WithTimeout(ctx, s.pollInterval)
	defer cancel()
	n, err := conn.WaitForNotification(wctx)
	if err != nil {
		return false
	}
	rev, err := strconv.ParseInt(n.Payload, 10, 64)
	if err != nil {
		return false
	}
	s.rev.Publish(rev)
	return true
}

// poll reads the committed revision, waking watchers if it moved.
func (s *Store) poll(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	_, err := s.Revision(ctx)
	if ctx.Err() == nil {
		s.setWritable(err == nil)
	}
}

// OnHealthChange implements store.HealthReporter: fn hears false when a
// write or poll fails to reach the database, and true when a later poll
// succeeds.
func (s *Store) OnHealthChange(fn func(writable bool)) {
	s.healthMu.Lock()
	s.onHealth = fn
	s.healthMu.Unlock()
}

func (s *Store) setWritable(ok bool) {
	if s.writable.Swap(ok) != ok {
		s.healthMu.Lock()
		fn := s.onHealth
		s.healthMu.Unlock()
		if fn != nil {
			fn(ok)
		}
	}
}
