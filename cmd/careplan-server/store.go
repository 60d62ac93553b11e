package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/careplan/careplan/metrics"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/boltstore"
	"github.com/careplan/careplan/store/postgres"
)

// isPostgres reports whether --store names a PostgreSQL database.
func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// openStore opens the PostgreSQL store when --store names one (its schema
// migrations run at start, safely from several replicas at once), or else
// the bbolt file in --data; either with its commit metrics.
func openStore(ctx context.Context, cfg *config, reg *metrics.Registry) (store.Store, error) {
	if cfg.storeURL != "" {
		return postgres.Open(ctx, cfg.storeURL, postgres.Options{Observer: reg.NewStore(nil)})
	}
	var st *boltstore.Store
	// The size gauge is read only when /metrics is scraped, after Open.
	observer := reg.NewStore(func() int64 { return st.FileSize() })
	var err error
	mapped := int64(cfg.maxMappedMB) << 20
	if mapped <= 0 {
		mapped = -1 // no bound
	}
	st, err = boltstore.Open(cfg.data, boltstore.Options{Observer: observer, MappedBytes: mapped, MapAhead: int64(cfg.mapAheadMB) << 20})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// storeName is what the logs say about the store: never the DSN, which may
// hold a password.
func (c *config) storeName() string {
	if c.storeURL != "" {
		return "postgres"
	}
	return "bbolt " + c.data
}

func checkStoreFlag(dsn string) error {
	if dsn != "" && !isPostgres(dsn) {
		return fmt.Errorf("%w: --store takes a postgres:// URL (without it, the store is bbolt in --data)", errUsage)
	}
	return nil
}
