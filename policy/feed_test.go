package policy_test

import (
	"errors"
	"testing"

	"github.com/careplan/careplan/policy"
)

func TestInFeed(t *testing.T) {
	errStore := errors.New("store down")
	tests := []struct {
		name    string
		org     string
		now     policy.ReadFacts
		nowErr  error
		want    bool
		wantErr error
		asked   bool
	}{
		{"related then and now", "C123", policy.ReadFacts{Related: true}, nil, true, nil, true},
		{"removed since", "C123", policy.ReadFacts{}, nil, false, nil, true},
		{"added since", "ZZZ9", policy.ReadFacts{Related: true}, nil, false, nil, false},
		{"never related", "ZZZ9", policy.ReadFacts{}, nil, false, nil, false},
		{"current plan unreadable", "RXA", policy.ReadFacts{}, errStore, false, errStore, true},
	}
	for _, tt := range tests {
		asked := false
		got, err := policy.InFeed(plan(), tt.org, func() (policy.ReadFacts, error) {
			asked = true
			return tt.now, tt.nowErr
		})
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) || asked != tt.asked {
			t.Errorf("%s: InFeed = %v, %v (asked now: %v); want %v, %v (%v)", tt.name, got, err, asked, tt.want, tt.wantErr, tt.asked)
		}
	}
}
