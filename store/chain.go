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
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("%w: audit event: %v", ErrInvalidRecord, err)
	}
	return b, nil
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
	b, err := MarshalAudit(ev)
	if err != nil {
		return fmt.Errorf("audit chain broken at sequence %d: %w", ev.GetSequence(), err)
	}
	return v.NextStored(ev, b)
}

// NextStored is Next for an event read from storage as stored, hashing the
// stored bytes themselves so that any change to them is caught.
func (v *ChainVerifier) NextStored(ev *careplanv1.AuditEvent, stored []byte) error {
	if ev.GetSequence() != v.lastSeq+1 {
		return fmt.Errorf("audit chain broken at sequence %d: expected sequence %d (an event is missing)", ev.GetSequence(), v.lastSeq+1)
	}
	if !bytes.Equal(ev.GetPrevHash(), v.prev) {
		return fmt.Errorf("audit chain broken between sequence %d and %d: prev_hash of %d does not match event %d as stored (one of them was altered)",
			v.lastSeq, ev.GetSequence(), ev.GetSequence(), v.lastSeq)
	}
	sum := sha256.Sum256(stored)
	v.prev, v.lastSeq = sum[:], ev.GetSequence()
	v.Count++
	return nil
}

// Head is the hash of the last event checked.
func (v *ChainVerifier) Head() []byte { return v.prev }
