package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/careplan/careplan/store/boltstore"
	"github.com/careplan/careplan/store/postgres"
)

// verifyAudit checks the audit hash chain of a stopped server's data file
// (or a backup), or of a PostgreSQL store, prints how many events it
// checked, and fails naming the first broken link.
func verifyAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("careplan-server verify-audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data/careplan.db", "bbolt data file (server stopped) or backup")
	dsn := fs.String("store", "", "postgres:// URL: check the chain in PostgreSQL instead (servers may keep running)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if err := checkStoreFlag(*dsn); err != nil {
		return err
	}
	var n int64
	var err error
	if *dsn != "" {
		n, err = postgres.VerifyAudit(ctx, *dsn)
	} else {
		n, err = boltstore.VerifyAudit(*data)
	}
	if err != nil {
		fmt.Fprintf(stdout, "audit chain BROKEN after %d good events\n", n)
		return err
	}
	fmt.Fprintf(stdout, "audit chain OK: %d events\n", n)
	return nil
}
