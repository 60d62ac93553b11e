package validate_test

import (
	"testing"

	"github.com/careplan/careplan/validate"
)

func TestDate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{name: "ordinary", in: "2025-06-30", ok: true},
		{name: "leap year", in: "2024-02-29", ok: true},
		{name: "leap century", in: "2000-02-29", ok: true},
		{name: "not a leap year", in: "2025-02-29"},
		{name: "century not a leap year", in: "1900-02-29"},
		{name: "month 13", in: "2025-13-01"},
		{name: "day 31 in a 30-day month", in: "2025-04-31"},
		{name: "day 0", in: "2025-01-00"},
		{name: "single-digit month", in: "2025-1-01"},
		{name: "signed year", in: "+999-01-01"},
		{name: "slashes", in: "2025/01/01"},
		{name: "with time", in: "2025-01-01T00:00:00Z"},
		{name: "empty", in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validate.Date(tt.in); (err == nil) != tt.ok {
				t.Errorf("Date(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestODSCode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // empty: an error is expected
	}{
		{name: "trust", in: "RXA", want: "RXA"},
		{name: "lower case is uppercased", in: "rxa01", want: "RXA01"},
		{name: "nine characters", in: "ABCDE1234", want: "ABCDE1234"},
		{name: "ten characters", in: "ABCDE12345"},
		{name: "empty", in: ""},
		{name: "space", in: "RX A"},
		{name: "punctuation", in: "RX-A"},
		{name: "non-ASCII letter", in: "RXÄ"},
		{name: "non-ASCII letter that uppercases to ASCII", in: "rxı"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := validate.ODSCode(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Errorf("ODSCode(%q) = %q, nil; want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ODSCode(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestError(t *testing.T) {
	if err := validate.NewError(nil); err != nil {
		t.Errorf("NewError(nil) = %v, want nil", err)
	}
	err := validate.NewError([]validate.FieldViolation{
		{Field: "care_plan.nhs_number", Description: "check digit does not match"},
		{Field: "care_plan.status", Description: "required"},
	})
	want := "invalid argument: care_plan.nhs_number: check digit does not match; care_plan.status: required"
	if err == nil || err.Error() != want {
		t.Errorf("Error() = %v, want %q", err, want)
	}
}
