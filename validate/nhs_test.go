package validate_test

import (
	"strings"
	"testing"

	"github.com/careplan/careplan/validate"
)

func TestNHSNumber(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "valid", in: "9434765919", want: "9434765919"},
		{name: "valid 3-3-4 spaced", in: "943 476 5919", want: "9434765919"},
		{name: "check result 11 means 0", in: "1000000060", want: "1000000060"},
		{name: "wrong check digit", in: "9434765918", wantErr: "check digit does not match"},
		{name: "check result 10 is never valid", in: "1000000010", wantErr: "check digit does not match"},
		{name: "reserved example prefix", in: "1234567890", wantErr: "123456789"},
		{name: "reserved example prefix spaced", in: "123 456 7890", wantErr: "123456789"},
		{name: "9 digits", in: "943476591", wantErr: "must be 10 digits"},
		{name: "11 digits", in: "94347659190", wantErr: "must be 10 digits"},
		{name: "empty", in: "", wantErr: "must be 10 digits"},
		{name: "letters", in: "94347659AB", wantErr: "must be 10 digits"},
		{name: "spaced 4-3-3", in: "9434 765 919", wantErr: "must be 10 digits"},
		{name: "double space", in: "943  476 5919", wantErr: "must be 10 digits"},
		{name: "leading space", in: " 9434765919", wantErr: "must be 10 digits"},
		{name: "dashes", in: "943-476-5919", wantErr: "must be 10 digits"},
		{name: "non-ASCII digits", in: "٩٤٣٤٧٦٥٩١٩", wantErr: "must be 10 digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := validate.NHSNumber(tt.in)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("NHSNumber() = %q, %v; want %q, nil", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("NHSNumber() = %q, nil; want error containing %q", got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			// The number is patient data and must not leak into errors.
			digits := strings.ReplaceAll(tt.in, " ", "")
			if len(digits) >= 6 && strings.Contains(err.Error(), digits) {
				t.Errorf("error %q contains the number", err)
			}
		})
	}
}
