package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
)

// runBackup writes the snapshot through a temporary file, so FILE is either
// a complete, size-checked backup or untouched. The file holds every
// patient's record, hence mode 0600.
func runBackup(ctx context.Context, e *env, args []string) error {
	fs := e.flags("backup")
	out := fs.String("o", "", "write the backup to `FILE`")
	if err := noArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError("backup takes -o FILE")
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	var n int64
	err = writeFileAtomic(*out, 0o600, func(w io.Writer) (err error) {
		n, err = c.Backup(e.callContext(ctx), w)
		return err
	})
	if err != nil {
		return err
	}
	b, err := json.Marshal(struct {
		File  string `json:"file"`
		Bytes int64  `json:"bytes"`
	}{*out, n})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}
