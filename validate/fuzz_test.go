package validate_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/validate"
)

func FuzzNHSNumber(f *testing.F) {
	for _, s := range []string{"9434765919", "943 476 5919", "9434765918", "1234567881", "1000000010", "", "94347659\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := validate.NHSNumber(s)
		if err != nil {
			return
		}
		if len(got) != 10 {
			t.Fatalf("NHSNumber(%q) = %q: not 10 characters", s, got)
		}
		sum := 0
		for i, r := range got {
			if r < '0' || r > '9' {
				t.Fatalf("NHSNumber(%q) = %q: not all digits", s, got)
			}
			if i < 9 {
				sum += int(r-'0') * (10 - i)
			}
		}
		if check := (11 - sum%11) % 11; check == 10 || int(got[9]-'0') != check {
			t.Fatalf("NHSNumber(%q) = %q: check digit does not verify", s, got)
		}
		if got[:9] == "123456789" {
			t.Fatalf("NHSNumber(%q) accepted a reserved example number", s)
		}
	})
}

func FuzzCarePlan(f *testing.F) {
	valid, err := proto.Marshal(validPlan())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte{})
	f.Add([]byte{0x18, 0x63, 0x2a, 0x00, 0x32, 0x02, 0x2a, 0x00}) // status 99, empty team member, goal with empty owner
	f.Fuzz(func(t *testing.T, b []byte) {
		var p careplanv1.CarePlan
		if proto.Unmarshal(b, &p) != nil {
			return
		}
		v := validate.DefaultLimits().CarePlan(&p, "care_plan")
		// Validating twice must give the same answer: normalisation is
		// idempotent and never turns a valid plan invalid.
		if again := validate.DefaultLimits().CarePlan(&p, "care_plan"); len(again) != len(v) {
			t.Fatalf("second pass found %d violations, first %d", len(again), len(v))
		}
	})
}
