package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Backup streams a consistent snapshot of the server's store (a bbolt file)
// into w and returns the bytes written. It needs the careplan:admin role.
//
// The server announces the snapshot's size in its first message; Backup
// fails if the bytes received differ, so a stream cut short (or a proxy
// that dropped a message) never passes for a good backup. w may still hold
// a partial file then: write to a temporary file and rename it only on
// success. To restore, stop the server, put the file at its --data path and
// start it again.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	stream, err := c.admin.Backup(ctx, &careplanv1.BackupRequest{})
	if err != nil {
		return 0, FromError(err)
	}
	var written, total int64
	for first := true; ; first = false {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return written, FromError(err)
		}
		if first {
			total = msg.GetTotalBytes()
		}
		n, err := w.Write(msg.GetData())
		written += int64(n)
		if err != nil {
			return written, fmt.Errorf("client: backup: %w", err)
		}
	}
	if written == 0 || written != total {
		return written, fmt.Errorf("client: backup incomplete: received %d bytes, the server announced %d", written, total)
	}
	return written, nil
}
