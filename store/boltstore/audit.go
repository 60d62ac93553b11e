package boltstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
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
	if nhs := ev.GetNhsNumber(); nhs != "" && len(nhs) <= maxAuditNHS {
		return tx.Bucket(bucketAuditByNHS).Put(auditByNHSKey(nhs, seq), nil)
	}
	return nil
}

// AppendAudit implements store.Store.
func (s *Store) AppendAudit(ctx context.Context, events ...*careplanv1.AuditEvent) error {
	return s.commit(ctx, func(tx *bolt.Tx) error {
		for _, ev := range events {
			if err := appendAuditTx(tx, ev, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// ListAudit implements store.Store.
func (s *Store) ListAudit(_ context.Context, q store.AuditQuery) ([]*careplanv1.AuditEvent, int64, error) {
	var (
		out  []*careplanv1.AuditEvent
		next int64
	)
	err := s.view(func(tx *bolt.Tx) error {
		out, next = nil, 0
		events := tx.Bucket(bucketAudit)
		it := newSeqIter(tx, q.NhsNumber, q.AfterSequence)
		orgPlans := tx.Bucket(bucketOrgPlans)
		last := q.AfterSequence
		for scanned := 0; ; scanned++ {
			seq, ok := it.next()
			if !ok {
				return nil
			}
			if len(out) == q.Limit || scanned == maxScan {
				next = last
				return nil
			}
			last = int64(seq)
			ev := &careplanv1.AuditEvent{}
			if err := proto.Unmarshal(events.Get(u64(seq)), ev); err != nil {
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

// seqIter walks audit sequences after a point, either over every event or
// over one plan's index.
type seqIter struct {
	c      *bolt.Cursor
	prefix []byte
	k      []byte
	first  bool
}

func newSeqIter(tx *bolt.Tx, nhs string, after int64) *seqIter {
	if nhs == "" {
		c := tx.Bucket(bucketAudit).Cursor()
		k, _ := c.Seek(u64(uint64(after) + 1))
		return &seqIter{c: c, k: k, first: true}
	}
	c := tx.Bucket(bucketAuditByNHS).Cursor()
	k, _ := c.Seek(auditByNHSKey(nhs, uint64(after)+1))
	return &seqIter{c: c, prefix: []byte(nhs), k: k, first: true}
}

func (it *seqIter) next() (uint64, bool) {
	if !it.first {
		it.k, _ = it.c.Next()
	}
	it.first = false
	k := it.k
	if k == nil || !bytes.HasPrefix(k, it.prefix) || len(k) != len(it.prefix)+8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(it.prefix):]), true
}
