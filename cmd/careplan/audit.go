package main

import (
	"context"
	"time"

	"github.com/careplan/careplan/client"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

func runAudit(ctx context.Context, e *env, args []string) error {
	fs := e.flags("audit")
	nhs := fs.String("nhs", "", "only the events naming the plan of this `NHS` number")
	since := fs.String("since", "", "only the events at or after this `RFC3339` time")
	until := fs.String("until", "", "only the events before this `RFC3339` time")
	if err := noArgs(fs, args); err != nil {
		return err
	}
	filter := client.AuditFilter{NhsNumber: *nhs}
	var err error
	if filter.Start, err = parseTime("since", *since); err != nil {
		return err
	}
	if filter.End, err = parseTime("until", *until); err != nil {
		return err
	}
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	return c.AuditEvents(e.callContext(ctx), filter, func(ev *careplanv1.AuditEvent) error {
		return e.printLine(ev)
	})
}

// parseTime parses the RFC 3339 value of flag name; "" is the zero time,
// which does not filter.
func parseTime(name, value string) (time.Time, error) {
	if value == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, value)
	if err != nil {
		return time.Time{}, usageError("--" + name + " wants an RFC 3339 time such as 2026-03-01T09:00:00Z: " + err.Error())
	}
	return t, nil
}
