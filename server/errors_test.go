package server

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/careplan/careplan/store"
)

// TestUnavailableSaysWhetherAnythingWasWritten: a store failure tells the
// caller nothing was written, unless the store lost its database while
// committing; then the caller hears the outcome is unknown, and how to
// find out. Neither shows the store's own error text.
func TestUnavailableSaysWhetherAnythingWasWritten(t *testing.T) {
	tests := []struct {
		err                error
		reason, wantInText string
	}{
		{fmt.Errorf("%w: disk full at /var/lib/careplan", store.ErrUnavailable), "STORE_UNAVAILABLE", "nothing was written"},
		{fmt.Errorf("%w (the connection failed during COMMIT): conn closed", store.ErrOutcomeUnknown), "OUTCOME_UNKNOWN", "retry with the same request_id"},
	}
	for _, tc := range tests {
		st := status.Convert(toStatus(tc.err))
		var reason string
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.GetReason()
			}
		}
		if st.Code() != codes.Unavailable || reason != tc.reason || !strings.Contains(st.Message(), tc.wantInText) {
			t.Errorf("%v: %v %s %q; want UNAVAILABLE %s, saying %q", tc.err, st.Code(), reason, st.Message(), tc.reason, tc.wantInText)
		}
		if strings.Contains(st.Message(), "/var/lib") || strings.Contains(st.Message(), "conn closed") {
			t.Errorf("%v: the caller sees the store's own text: %q", tc.err, st.Message())
		}
	}
}
