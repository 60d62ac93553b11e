package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// maxScan bounds the index entries one list call reads, so a selective
// filter over a large organisation cannot hold a read transaction for long;
// the caller gets a continuation instead.
const maxScan = 10000

// Create implements store.Store.
func (s *Store) Create(ctx context.Context, w store.Write) (*careplanv1.CarePlan, error) {
	return s.writePlan(ctx, w, func(tx *bolt.Tx, p *careplanv1.CarePlan) (*careplanv1.CarePlan, error) {
		if tx.Bucket(bucketPlans).Get([]byte(p.GetNhsNumber())) != nil {
			return nil, store.ErrAlreadyExists
		}
		p.Version = 1
		p.CreateTime, p.CreatedBy = p.GetUpdateTime(), p.GetUpdatedBy()
		return nil, nil
	})
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, w store.Write) (*careplanv1.CarePlan, error) {
	return s.writePlan(ctx, w, func(tx *bolt.Tx, p *careplanv1.CarePlan) (*careplanv1.CarePlan, error) {
		cur, err := currentTx(tx, p.GetNhsNumber())
		if err != nil {
			return nil, err
		}
		if cur.GetEtag() != w.MatchEtag {
			return nil, &store.EtagMismatchError{Current: cur.GetEtag()}
		}
		p.Version = cur.GetVersion() + 1
		p.CreateTime, p.CreatedBy = cur.GetCreateTime(), cur.GetCreatedBy()
		return cur, nil
	})
}

// writePlan commits w as a new version. After the idempotency check, prepare
// checks the write against the stored plan (returned as old; nil on create)
// and sets the version fields of p, whose update time and actor are set.
func (s *Store) writePlan(ctx context.Context, w store.Write, prepare func(tx *bolt.Tx, p *careplanv1.CarePlan) (old *careplanv1.CarePlan, err error)) (*careplanv1.CarePlan, error) {
	var out *careplanv1.CarePlan
	err := s.commit(ctx, func(tx *bolt.Tx) error {
		out = nil
		if p, ok, err := replayTx(tx, w); ok || err != nil {
			out = p
			return err
		}
		p, old, typ, err := store.NewVersion(w, func(p *careplanv1.CarePlan) (*careplanv1.CarePlan, error) { return prepare(tx, p) })
		if err != nil {
			return err
		}
		out = p
		return s.putVersionTx(tx, old, p, typ, w)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// replayTx returns the stored result of an earlier write with the same
// request key, recording this call's audit event. ok is false when the key
// is new (or empty).
func replayTx(tx *bolt.Tx, w store.Write) (*careplanv1.CarePlan, bool, error) {
	if w.RequestKey == "" {
		return nil, false, nil
	}
	p, ok, err := lookupRequestTx(tx, w.RequestKey)
	if !ok || err != nil {
		return nil, false, err
	}
	return p, true, appendAuditTx(tx, w.Audit, p)
}

// putVersionTx writes p as the new current version, with its indexes,
// revision, idempotency record and audit event. old is nil on create.
func (s *Store) putVersionTx(tx *bolt.Tx, old, p *careplanv1.CarePlan, typ careplanv1.CarePlanEvent_Type, w store.Write) error {
	body, err := proto.Marshal(p)
	if err != nil {
		return err
	}
	nhs := p.GetNhsNumber()
	if err := tx.Bucket(bucketVersions).Put(versionKey(nhs, p.GetVersion()), body); err != nil {
		return err
	}
	if err := tx.Bucket(bucketPlans).Put([]byte(nhs), planEntry(p)); err != nil {
		return err
	}
	if err := indexOrgsTx(tx, old, p); err != nil {
		return err
	}
	ev := &careplanv1.CarePlanEvent{
		Type:      typ,
		NhsNumber: nhs,
		CarePlan:  &careplanv1.CarePlan{NhsNumber: nhs, Version: p.GetVersion()},
		Actor:     w.Actor,
		EventTime: p.GetUpdateTime(),
	}
	if err := s.appendRevisionTx(tx, ev); err != nil {
		return err
	}
	if w.RequestKey != "" {
		at := p.GetUpdateTime().AsTime().UnixNano()
		if err := tx.Bucket(bucketRequests).Put([]byte(w.RequestKey), requestRecord(nhs, p.GetVersion(), at)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketRequestsByTime).Put(requestTimeKey(at, w.RequestKey), nil); err != nil {
			return err
		}
	}
	return appendAuditTx(tx, w.Audit, p)
}

// indexOrgsTx keeps org_plans in step: organisations no longer related lose
// the entry; related ones get a fresh summary.
func indexOrgsTx(tx *bolt.Tx, old, p *careplanv1.CarePlan) error {
	b := tx.Bucket(bucketOrgPlans)
	nhs := p.GetNhsNumber()
	now := policy.RelatedOrgs(p)
	if old != nil {
		for _, org := range policy.RelatedOrgs(old) {
			if !policy.Related(p, org) {
				if err := b.Delete(orgPlanKey(org, nhs)); err != nil {
					return err
				}
			}
		}
	}
	sum, err := proto.Marshal(summary(p))
	if err != nil {
		return err
	}
	for _, org := range now {
		if err := b.Put(orgPlanKey(org, nhs), sum); err != nil {
			return err
		}
	}
	return nil
}

// summary holds the fields list filters need.
func summary(p *careplanv1.CarePlan) *careplanv1.CarePlan {
	s := &careplanv1.CarePlan{Status: p.GetStatus(), NextReviewDate: p.GetNextReviewDate()}
	if id := p.GetCoordinator().GetId(); id != "" {
		s.Coordinator = &careplanv1.Professional{Id: id}
	}
	return s
}

// Get implements store.Store.
func (s *Store) Get(_ context.Context, nhs string) (*careplanv1.CarePlan, error) {
	var p *careplanv1.CarePlan
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		p, err = currentTx(tx, nhs)
		return err
	})
	return p, err
}

// GetStored implements store.Store. Whether org is related comes from the
// plan's entry in plans, which every write keeps in step with the current
// version.
func (s *Store) GetStored(_ context.Context, nhs, org string) (*store.StoredPlan, error) {
	var sp *store.StoredPlan
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		sp, err = storedTx(tx, nhs, func(entry []byte) bool { return relatedTx(tx, entry, nhs, org) })
		return err
	})
	return sp, err
}

// storedTx returns the current version of a plan as stored; related
// answers from the plan's entry in plans.
func storedTx(tx *bolt.Tx, nhs string, related func(entry []byte) bool) (*store.StoredPlan, error) {
	body, entry, err := currentBodyTx(tx, nhs)
	if err != nil {
		return nil, err
	}
	return store.NewStoredPlan(bytes.Clone(body), related(entry)) // body lives only as long as the transaction
}

// planEntry is a plan's value in plans: the current version, then the ODS
// code of each related organisation followed by a comma. Reads take
// relatedness from it, which saves a lookup in org_plans: on a large store
// with bounded mapped memory, each lookup is a page fault.
func planEntry(p *careplanv1.CarePlan) []byte {
	entry := u64(uint64(p.GetVersion()))
	for _, org := range policy.RelatedOrgs(p) {
		entry = append(append(entry, org...), ',')
	}
	return entry
}

// relatedTx reports whether org is related to the plan whose entry in plans
// is entry. An entry written before entries listed organisations, or one
// with none, falls back to org_plans.
func relatedTx(tx *bolt.Tx, entry []byte, nhs, org string) bool {
	org = strings.ToUpper(org)
	if org == "" {
		return false
	}
	codes := entry[8:]
	if len(codes) == 0 {
		return tx.Bucket(bucketOrgPlans).Get(orgPlanKey(org, nhs)) != nil
	}
	for len(codes) > 0 {
		code, rest, _ := bytes.Cut(codes, []byte{','})
		if string(code) == org {
			return true
		}
		codes = rest
	}
	return false
}

// LookupRequest implements store.Store.
func (s *Store) LookupRequest(_ context.Context, key string) (*careplanv1.CarePlan, bool, error) {
	var (
		p  *careplanv1.CarePlan
		ok bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		p, ok, err = lookupRequestTx(tx, key)
		return err
	})
	return p, ok, err
}

// PruneRequests implements store.RequestPruner: it forgets, oldest first,
// up to limit request keys of writes made before before. The plans and
// versions they name stay.
func (s *Store) PruneRequests(ctx context.Context, before time.Time, limit int) (int, error) {
	var n int
	err := s.commit(ctx, func(tx *bolt.Tx) error {
		n = 0
		idx, reqs := tx.Bucket(bucketRequestsByTime), tx.Bucket(bucketRequests)
		end := u64(uint64(before.UnixNano()))
		var expired [][]byte
		c := idx.Cursor()
		for k, _ := c.First(); k != nil && len(expired) < limit && bytes.Compare(k[:8], end) < 0; k, _ = c.Next() {
			expired = append(expired, bytes.Clone(k))
		}
		// Deleting while a cursor walks the bucket can skip keys, and a
		// key read from a page is only good until the bucket changes.
		for _, k := range expired {
			if err := idx.Delete(k); err != nil {
				return err
			}
			if err := reqs.Delete(k[8:]); err != nil {
				return err
			}
		}
		n = len(expired)
		return nil
	})
	return n, err
}

func lookupRequestTx(tx *bolt.Tx, key string) (*careplanv1.CarePlan, bool, error) {
	rec := tx.Bucket(bucketRequests).Get([]byte(key))
	if rec == nil {
		return nil, false, nil
	}
	nhs, version, _, err := parseRequestRecord(rec)
	if err != nil {
		return nil, false, err
	}
	p, err := versionTx(tx, nhs, version)
	return p, err == nil, err
}

func currentTx(tx *bolt.Tx, nhs string) (*careplanv1.CarePlan, error) {
	body, _, err := currentBodyTx(tx, nhs)
	return decodePlan(body, err)
}

func versionTx(tx *bolt.Tx, nhs string, version int64) (*careplanv1.CarePlan, error) {
	return decodePlan(versionBodyTx(tx, nhs, version))
}

// currentBodyTx returns the stored bytes of the current version and the
// plan's entry in plans, both valid only while tx is open.
func currentBodyTx(tx *bolt.Tx, nhs string) (body, entry []byte, err error) {
	entry = tx.Bucket(bucketPlans).Get([]byte(nhs))
	if entry == nil {
		return nil, nil, store.ErrNotFound
	}
	body, err = versionBodyTx(tx, nhs, int64(binary.BigEndian.Uint64(entry)))
	return body, entry, err
}

func versionBodyTx(tx *bolt.Tx, nhs string, version int64) ([]byte, error) {
	body := tx.Bucket(bucketVersions).Get(versionKey(nhs, version))
	if body == nil {
		return nil, fmt.Errorf("version %d of a plan is missing", version)
	}
	return body, nil
}

func decodePlan(body []byte, err error) (*careplanv1.CarePlan, error) {
	if err != nil {
		return nil, err
	}
	p := &careplanv1.CarePlan{}
	if err := proto.Unmarshal(body, p); err != nil {
		return nil, fmt.Errorf("decode plan version: %w", err)
	}
	return p, nil
}

// ListVersions implements store.Store.
func (s *Store) ListVersions(ctx context.Context, nhs string, after int64, limit int) ([]*careplanv1.CarePlan, error) {
	out, _, err := s.ListVersionsWithin(ctx, nhs, after, limit, 0)
	return out, err
}

// ListVersionsWithin implements store.Store.
func (s *Store) ListVersionsWithin(_ context.Context, nhs string, after int64, limit, maxBytes int) ([]*careplanv1.CarePlan, bool, error) {
	var (
		out  []*careplanv1.CarePlan
		more bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		out, more = nil, false
		if tx.Bucket(bucketPlans).Get([]byte(nhs)) == nil {
			return store.ErrNotFound
		}
		budget := store.Budget{Max: maxBytes}
		c := tx.Bucket(bucketVersions).Cursor()
		prefix := []byte(nhs)
		for k, v := c.Seek(versionKey(nhs, after+1)); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) != len(prefix)+8 {
				continue // another, longer key space; NHS numbers are fixed length
			}
			if len(out) == limit || !budget.Fits(len(v)) {
				more = true
				return nil
			}
			p := &careplanv1.CarePlan{}
			if err := proto.Unmarshal(v, p); err != nil {
				return fmt.Errorf("decode plan version: %w", err)
			}
			out = append(out, p)
		}
		return nil
	})
	return out, more, err
}

// ListPlans implements store.Store.
func (s *Store) ListPlans(_ context.Context, q store.PlanQuery) ([]*store.StoredPlan, string, error) {
	var (
		out  []*store.StoredPlan
		next string
	)
	err := s.view(func(tx *bolt.Tx) error {
		out, next = nil, ""
		prefix := orgPrefix(q.Org)
		c := tx.Bucket(bucketOrgPlans).Cursor()
		k, v := c.Seek(append(prefix, q.After...))
		if k != nil && q.After != "" && string(k[len(prefix):]) == q.After {
			k, v = c.Next()
		}
		lastScanned := q.After
		budget := store.Budget{Max: q.MaxBytes}
		for scanned := 0; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(out) == q.Limit || scanned == maxScan {
				next = lastScanned // entries remain: continue after the last one read
				return nil
			}
			nhs := string(k[len(prefix):])
			scanned++
			sum := &careplanv1.CarePlan{}
			if err := proto.Unmarshal(v, sum); err != nil {
				return fmt.Errorf("decode index entry: %w", err)
			}
			if !matches(sum, q) {
				lastScanned = nhs
				continue
			}
			body, _, err := currentBodyTx(tx, nhs)
			if err != nil {
				return err
			}
			if !budget.Fits(len(body)) {
				next = lastScanned // this plan starts the next page
				return nil
			}
			lastScanned = nhs
			p, err := store.NewStoredPlan(bytes.Clone(body), true) // body lives only as long as the transaction
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		next = ""
		return nil
	})
	return out, next, err
}

func matches(sum *careplanv1.CarePlan, q store.PlanQuery) bool {
	if q.Status != careplanv1.CarePlan_STATUS_UNSPECIFIED && sum.GetStatus() != q.Status {
		return false
	}
	if q.CoordinatorID != "" && sum.GetCoordinator().GetId() != q.CoordinatorID {
		return false
	}
	if q.ReviewDueBefore != "" && (sum.GetNextReviewDate() == "" || sum.GetNextReviewDate() >= q.ReviewDueBefore) {
		return false
	}
	return true
}
