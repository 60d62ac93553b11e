package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/careplan/careplan/store"
)

const (
	// pruneBatch bounds the request keys one prune transaction forgets, so
	// a backlog never holds the store's writer for long.
	pruneBatch = 1000
	// maxPruneInterval is how often keys are pruned with a long retention:
	// a key is forgotten at most this long after it expires.
	maxPruneInterval = 10 * time.Minute
)

// pruneRequests forgets request keys older than retention: at start, and
// then every retention or maxPruneInterval, whichever is shorter, until ctx
// ends. A failed round is logged and tried again at the next.
func pruneRequests(ctx context.Context, st store.RequestPruner, retention time.Duration, logger *slog.Logger) {
	tick := time.NewTicker(min(retention, maxPruneInterval))
	defer tick.Stop()
	for {
		pruneExpired(ctx, st, time.Now().Add(-retention), logger)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func pruneExpired(ctx context.Context, st store.RequestPruner, before time.Time, logger *slog.Logger) {
	total := 0
	for {
		n, err := st.PruneRequests(ctx, before, pruneBatch)
		total += n
		if err != nil {
			if ctx.Err() == nil {
				logger.Warn("pruning request keys failed; trying again later", "err", err)
			}
			break
		}
		if n < pruneBatch {
			break
		}
	}
	if total > 0 {
		logger.Info("request keys pruned", "count", total, "written_before", before.UTC().Format(time.RFC3339))
	}
}
