package validate

import (
	"errors"
	"strings"
)

// FieldViolation names one bad field and why it is bad. It maps one to one
// onto google.rpc.BadRequest.FieldViolation.
type FieldViolation struct {
	Field       string
	Description string
}

// Error carries every violation found in a request, so that the server can
// return them all in one INVALID_ARGUMENT.
type Error struct {
	Violations []FieldViolation
}

// NewError returns an *Error holding v, or nil when v is empty. Use it
// instead of &Error{...} so that "no violations" is a nil error interface,
// not a non-nil interface holding an empty *Error.
func NewError(v []FieldViolation) error {
	if len(v) == 0 {
		return nil
	}
	return &Error{Violations: v}
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid argument: ")
	for i, v := range e.Violations {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(v.Field)
		b.WriteString(": ")
		b.WriteString(v.Description)
	}
	return b.String()
}

// ErrInvalid is matched by errors.Is on every *Error, so the server maps
// any validation failure to INVALID_ARGUMENT in its one error table.
var ErrInvalid = errors.New("invalid argument")

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }
