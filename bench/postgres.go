//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/careplan/careplan/store/postgres"
)

// pgReplicas is how many careplan servers share the PostgreSQL database.
const pgReplicas = 2

// srvPG names the PostgreSQL replicas in the phase table.
const srvPG = "careplan pg x2"

// pgRun is what the PostgreSQL side of the run measured, for the report.
type pgRun struct {
	version         string // the server's server_version
	load            *result
	startUp         []time.Duration // each replica, to SERVING
	verified, acked int64
	connsPerReplica int // client connections to each replica
}

// pgDatabase is a database created for this run on the -postgres server and
// dropped at its end.
type pgDatabase struct {
	admin, name, dsn string
}

// createDatabase creates an empty database on the server admin names (as
// pgtest does for tests) and returns it with the server's version.
func createDatabase(ctx context.Context, admin string) (*pgDatabase, string, error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, "", errors.New("-postgres takes a postgres:// URL")
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return nil, "", fmt.Errorf("connect to -postgres: %w", err)
	}
	defer conn.Close(ctx)
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return nil, "", fmt.Errorf("-postgres server version: %w", err)
	}
	name := "careplan_bench_" + strings.ToLower(rand.Text()[:12])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, "", fmt.Errorf("create database: %w", err)
	}
	u.Path = "/" + name
	return &pgDatabase{admin: admin, name: name, dsn: u.String()}, version, nil
}

// drop removes the database, closing any connection still open to it.
func (d *pgDatabase) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE "+d.name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	return nil
}

// startPostgres creates a database for the run, loads the base set of plans
// into it through the PostgreSQL store (as the bbolt loader does, from many
// goroutines through Store.Create), starts pgReplicas careplan servers on
// it, and returns a client whose connections are spread over them. The
// replicas' --data sits in the run's directory beside the bbolt stores, so
// they trust the same dev key and the same tokens serve every phase.
func (b *bench) startPostgres(ctx context.Context, nhs []string) (*client, error) {
	db, version, err := createDatabase(ctx, b.cfg.postgres)
	if err != nil {
		return nil, err
	}
	b.cleanups = append(b.cleanups, db.drop)
	b.rep.pg = &pgRun{version: version}

	fmt.Fprintf(os.Stderr, "loading %d plans into PostgreSQL %s, database %s…\n", len(nhs), version, db.name)
	st, err := postgres.Open(ctx, db.dsn, postgres.Options{})
	if err != nil {
		return nil, err
	}
	r, err := fill(ctx, st, loadSpec{Path: "database " + db.name, NHS: nhs, PlanBytes: b.cfg.planBytes,
		WithCouncil: len(nhs), Callers: b.cfg.loadCallers, Timeout: b.cfg.loadTimeout})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	b.rep.pg.load = r
	fmt.Fprintf(os.Stderr, "  loaded in %s (%.0f plans/s)\n", r.Elapsed.Round(time.Millisecond), r.PerSec())

	// The replicas start together, as a deployment's would; the schema is
	// already migrated, and migrations take an advisory lock anyway.
	dataPath := filepath.Join(b.dir, "careplan.db")
	procs := make([]*proc, pgReplicas)
	errs := make([]error, pgReplicas)
	var wg sync.WaitGroup
	for i := range pgReplicas {
		wg.Go(func() {
			procs[i], errs[i] = b.careplanProc(ctx, fmt.Sprintf("careplan-pg-%d", i+1), dataPath, "--store", db.dsn)
		})
	}
	wg.Wait()
	var replicas []target
	for i, p := range procs {
		if p != nil {
			b.running = append(b.running, running{p.name, p})
			replicas = append(replicas, p)
			b.rep.pg.startUp = append(b.rep.pg.startUp, p.StartUp())
		}
		if errs[i] != nil {
			return nil, errs[i]
		}
	}
	c, err := b.dial(replicas...)
	if err != nil {
		return nil, err
	}
	b.rep.pg.connsPerReplica = len(c.conns) / pgReplicas
	return c, nil
}
