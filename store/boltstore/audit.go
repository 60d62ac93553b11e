package boltstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// maxAuditNHS bounds the nhs_number indexed for an event; callers may send
// anything, and an over-long value stays in the event but not in the index.
const maxAuditNHS = 64

// appendAuditTx appends ev to the hash chain. When p is not nil the event
// records a successful call on that plan version. A nil ev is a no-op, for
// internal writes that no caller made.
func appendAuditTx(tx *bolt.Tx, ev *careplanv1.AuditEvent, p *careplanv1.CarePlan) error {
	if ev == nil {
		return nil
	}
	if p != nil {
		ev.Outcome = "OK" // google.rpc.Code name, as the server records others
		ev.NhsNumber = p.GetNhsNumber()
		ev.PlanVersion = p.GetVersion()
	}
	b := tx.Bucket(bucketAudit)
	meta := tx.Bucket(bucketMeta)
	// The head is the hash of the last event as stored; it also lets an
	// offline check notice events cut off the end of the chain.
	ev.PrevHash = bytes.Clone(meta.Get(keyAuditHead)) // Get's slice dies with the tx
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	ev.Sequence = int64(seq)
	body, err := store.MarshalAudit(ev)
	if err != nil {
		return err
	}
	if err := b.Put(u64(seq), body); err != nil {
		return err
	}
	head := sha256.Sum256(body)
	if err := meta.Put(keyAuditHead, head[:]); err != nil {
		return err
	}
	return indexAuditTx(tx.Bucket(bucketAuditByNHS), ev.GetNhsNumber(), seq)
}

// indexAuditTx adds event seq to its plan's index entry, if it names one.
func indexAuditTx(idx *bolt.Bucket, nhs string, seq uint64) error {
	if nhs == "" || len(nhs) > maxAuditNHS {
		return nil
	}
	return idx.Put(auditByNHSKey(nhs, seq), nil)
}

// AppendAudit implements store.Store. The events change no plan, so they
// usually go to the audit journal (see journal.go).
func (s *Store) AppendAudit(ctx context.Context, events ...*careplanv1.AuditEvent) error {
	return s.queue(&op{ctx: ctx, events: events, done: make(chan error, 1)})
}

// ListAudit implements store.Store. Journalled events are checkpointed
// into bbolt first. If the disk refuses the checkpoint (full), they are read
// from memory instead, so the log shown is still whole.
func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]*careplanv1.AuditEvent, int64, error) {
	var (
		out     []*careplanv1.AuditEvent
		next    int64
		pending []journalRecord
	)
	if err := s.flushJournal(ctx); err != nil {
		if !errors.Is(err, store.ErrUnavailable) {
			return nil, 0, err
		}
		pending = s.pendingEvents()
	}
	err := s.view(func(tx *bolt.Tx) error {
		out, next = nil, 0
		events := tx.Bucket(bucketAudit)
		it := newSeqIter(tx, q.NhsNumber, q.AfterSequence)
		// Events a checkpoint moved in since the snapshot are in bbolt.
		committed := events.Sequence()
		nextEvent := func() (uint64, []byte, bool) {
			if seq, ok := it.next(); ok {
				return seq, events.Get(u64(seq)), true
			}
			for ; len(pending) > 0; pending = pending[1:] {
				r := pending[0]
				if r.seq > committed && r.seq > uint64(q.AfterSequence) && (q.NhsNumber == "" || r.nhs == q.NhsNumber) {
					pending = pending[1:]
					return r.seq, r.body, true
				}
			}
			return 0, nil, false
		}
		orgPlans := tx.Bucket(bucketOrgPlans)
		last := q.AfterSequence
		for scanned := 0; ; scanned++ {
			seq, raw, ok := nextEvent()
			if !ok {
				return nil
			}
			if len(out) == q.Limit || scanned == maxScan {
				next = last
				return nil
			}
			last = int64(seq)
			ev := &careplanv1.AuditEvent{}
			if err := proto.Unmarshal(raw, ev); err != nil {
				return fmt.Errorf("decode audit event %d: %w", seq, err)
			}
			t := ev.GetTime().AsTime()
			if (!q.Start.IsZero() && t.Before(q.Start)) || (!q.End.IsZero() && !t.Before(q.End)) {
				continue
			}
			if q.Org != "" && ev.GetOrgCode() != q.Org && orgPlans.Get(orgPlanKey(q.Org, ev.GetNhsNumber())) == nil {
				continue
			}
			out = append(out, ev)
		}
	})
	return out, next, err
}

// seqIter walks audit sequences after a point in order, either over every
// event or over one plan's index, epoch by epoch.
type seqIter struct {
	c     *bolt.Cursor
	nhs   []byte // nil: every event
	after uint64 // the last sequence returned (or skipped)
	last  uint64 // the highest sequence stored
	k     []byte // the cursor's current key, not yet returned
	epoch uint64
}

func newSeqIter(tx *bolt.Tx, nhs string, after int64) *seqIter {
	audit := tx.Bucket(bucketAudit)
	if nhs == "" {
		c := audit.Cursor()
		k, _ := c.Seek(u64(uint64(after) + 1))
		return &seqIter{c: c, k: k}
	}
	it := &seqIter{c: tx.Bucket(bucketAuditByNHS).Cursor(), nhs: []byte(nhs), after: uint64(after), last: audit.Sequence()}
	it.seekEpoch(auditEpoch(it.after + 1))
	return it
}

// seekEpoch positions the cursor at the plan's first entry after it.after
// in epoch e.
func (it *seqIter) seekEpoch(e uint64) {
	it.epoch = e
	it.k, _ = it.c.Seek(auditByNHSKey(string(it.nhs), max(it.after+1, e<<auditEpochBits)))
}

func (it *seqIter) next() (uint64, bool) {
	if it.nhs == nil {
		k := it.k
		if k == nil || len(k) != 8 {
			return 0, false
		}
		it.k, _ = it.c.Next()
		return binary.BigEndian.Uint64(k), true
	}
	for {
		prefix := binary.BigEndian.AppendUint64(nil, it.epoch)
		prefix = append(prefix, it.nhs...)
		if k := it.k; k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 {
			seq := binary.BigEndian.Uint64(k[len(prefix):])
			it.after = seq
			it.k, _ = it.c.Next()
			return seq, true
		}
		if it.epoch >= auditEpoch(it.last) {
			return 0, false
		}
		it.seekEpoch(it.epoch + 1)
	}
}
