package store

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// MarshalAudit encodes an audit event in the one byte form its hash is taken
// over. Backends store these bytes so that the chain can be checked offline.
func MarshalAudit(ev *careplanv1.AuditEvent) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(ev)
}

// AuditHash is the SHA-256 that the next event's prev_hash must hold.
func AuditHash(ev *careplanv1.AuditEvent) ([]byte, error) {
	b, err := MarshalAudit(ev)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

// ChainVerifier checks audit events fed to it in sequence order.
type ChainVerifier struct {
	prev    []byte
	lastSeq int64
	Count   int64
}

// Next checks ev against the event before it. The error names the first
// broken link.
func (v *ChainVerifier) Next(ev *careplanv1.AuditEvent) error {
	if ev.GetSequence() != v.lastSeq+1 {
		return fmt.Errorf("audit chain broken at sequence %d: expected sequence %d (an event is missing)", ev.GetSequence(), v.lastSeq+1)
	}
	if !bytes.Equal(ev.GetPrevHash(), v.prev) {
		return fmt.Errorf("audit chain broken at sequence %d: prev_hash does not match event %d", ev.GetSequence(), v.lastSeq)
	}
	h, err := AuditHash(ev)
	if err != nil {
		return fmt.Errorf("audit chain broken at sequence %d: %w", ev.GetSequence(), err)
	}
	v.prev, v.lastSeq = h, ev.GetSequence()
	v.Count++
	return nil
}
