package server

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/careplan/careplan/auth"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// TestAccessReasonIsCleanText: a client other than grpc-go can send header
// bytes that are not UTF-8. An audit record cannot hold them (the event
// would not encode, and the call would fail in the store), so the reason
// is kept as clean text: U+FFFD for bad bytes, control characters dropped.
func TestAccessReasonIsCleanText(t *testing.T) {
	ctx := metadata.NewIncomingContext(context.Background(),
		metadata.Pairs(accessReasonHeader, "Unconscious\xff in A&E,\x00 need the care plan"))
	if got, want := accessReason(ctx), "Unconscious\uFFFD in A&E, need the care plan"; got != want {
		t.Fatalf("accessReason = %q, want %q", got, want)
	}
	ev := newAuditEvent(ctx, &auth.Principal{Subject: "ed-1", Org: "ZZZ9", OrgType: careplanv1.Organisation_TYPE_NHS}, "GetCarePlan", "943 476 5919\x00\xff", nil)
	if _, err := store.MarshalAudit(ev); err != nil {
		t.Fatalf("the audit event does not encode: %v", err)
	}
}
