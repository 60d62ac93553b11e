package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/careplan/careplan/store/boltstore"
)

// verifyAudit checks the audit hash chain of a stopped server's data file
// (or a backup), prints how many events it checked, and fails naming the
// first broken link.
func verifyAudit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("careplan-server verify-audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data/careplan.db", "bbolt data file (server stopped) or backup")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	n, err := boltstore.VerifyAudit(*data)
	if err != nil {
		fmt.Fprintf(stdout, "audit chain BROKEN after %d good events\n", n)
		return err
	}
	fmt.Fprintf(stdout, "audit chain OK: %d events\n", n)
	return nil
}
