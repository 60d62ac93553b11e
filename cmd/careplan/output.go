package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/client"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// jsonOut prints the field names of the proto and of DESIGN.md (nhs_number,
// not nhsNumber), so output can be edited and fed back to create or update.
var jsonOut = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}

// jsonLine is jsonOut on one line, for streams of records (watch, audit)
// that line-oriented tools (jq, a log shipper) read one record at a time.
var jsonLine = protojson.MarshalOptions{UseProtoNames: true}

// usageError is a mistake in the command line: exit status 2, with usage.
type usageError string

func (u usageError) Error() string { return string(u) }

// inputError is a plan file that cannot be read or parsed. It is reported
// like the server's INVALID_ARGUMENT, since it is the same mistake caught
// earlier.
type inputError struct{ err error }

func (i inputError) Error() string { return i.err.Error() }
func (i inputError) Unwrap() error { return i.err }

// errorJSON is the one object printed on stderr for a failed command. Every
// key is always present so scripts can read it without checking.
type errorJSON struct {
	Code        string   `json:"code"`
	Reason      string   `json:"reason"`
	Message     string   `json:"message"`
	Fields      []string `json:"fields"`
	CurrentEtag string   `json:"current_etag"`
}

func (e *env) print(m proto.Message) error { return e.printWith(jsonOut, m) }

func (e *env) printLine(m proto.Message) error { return e.printWith(jsonLine, m) }

func (e *env) printWith(opts protojson.MarshalOptions, m proto.Message) error {
	b, err := opts.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

// readPlan reads a protojson CarePlan from path, or stdin for "-". Unknown
// fields are rejected, so a misspelt field name is not silently dropped.
func (e *env) readPlan(path string) (*careplanv1.CarePlan, error) {
	var (
		b   []byte
		err error
	)
	if path == "-" {
		b, err = io.ReadAll(e.stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, inputError{err}
	}
	plan := &careplanv1.CarePlan{}
	if err := protojson.Unmarshal(b, plan); err != nil {
		return nil, inputError{fmt.Errorf("%s: %w", path, err)}
	}
	return plan, nil
}

// exit reports err and returns the exit status for it.
func (e *env) exit(err error) int {
	var usage usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		e.usage(e.stdout)
		return 0
	case errors.As(err, &usage):
		fmt.Fprintf(e.stderr, "careplan: %v\n\n", err)
		e.usage(e.stderr)
		return 2
	}
	out := errorJSON{Code: code.Code(codes.Unknown).String(), Message: err.Error(), Fields: []string{}}
	var ce *client.Error
	switch {
	case errors.As(err, &ce):
		out.Code, out.Reason, out.Message = code.Code(ce.Code).String(), ce.Reason, ce.Message
		out.Fields = append(out.Fields, ce.Fields...)
		out.CurrentEtag = ce.CurrentEtag()
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		out.Code = code.Code(status.FromContextError(err).Code()).String()
	case errors.As(err, new(inputError)):
		out.Code = code.Code(codes.InvalidArgument).String()
	}
	b, _ := json.Marshal(out) // cannot fail: strings only
	fmt.Fprintf(e.stderr, "%s\n", b)
	return 1
}

func (e *env) usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: careplan [--addr HOST:PORT] [--tls ...] [--reason TEXT] COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %s %s\n      %s\n", c.name, c.synopsis, c.summary)
	}
	b.WriteString(`
Global flags:
  --addr HOST:PORT  server address (default $CAREPLAN_ADDR, else ` + defaultAddr + `)
  --reason TEXT     break-glass reason, sent as x-access-reason (also accepted after COMMAND)
  --tls             connect with TLS, verifying the server against the system's roots
  --tls-ca FILE     ... or against this CA bundle (PEM); implies --tls
  --tls-cert FILE   client certificate (PEM) for a server that requires mutual TLS; implies --tls
  --tls-key FILE    its key (PEM)

Environment:
  CAREPLAN_ADDR   server address
  CAREPLAN_TOKEN  bearer token sent with every call
  CAREPLAN_TLS=1, CAREPLAN_TLS_CA, CAREPLAN_TLS_CERT, CAREPLAN_TLS_KEY
                  defaults for the TLS flags

Plans are printed on stdout as protojson with proto field names; watch and
audit print one such object per line. A failed call prints one JSON object
{"code","reason","message","fields","current_etag"} on stderr and exits 1; a
usage error exits 2. An interrupted watch exits 0.
`)
	io.WriteString(w, b.String())
}
