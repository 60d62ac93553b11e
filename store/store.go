// Package store defines the storage contract behind careplan: the Store
// interface, its sentinel errors, and the query types. Backends live in
// sub-packages (store/boltstore) and must pass the conformance suite in
// store/storetest.
//
// The contract every backend keeps:
//   - each write is one transaction: current plan, new version, indexes,
//     revision log entry, idempotency record and audit event;
//   - every version is kept; nothing is overwritten in place;
//   - the etag is checked inside the write transaction;
//   - a write is durable (fsynced) before the call returns;
//   - audit events form a SHA-256 hash chain in commit order.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Sentinel errors. The server maps them to gRPC codes in one table.
var (
	ErrNotFound      = errors.New("care plan not found")
	ErrAlreadyExists = errors.New("care plan already exists")
	// ErrEtagMismatch is matched by errors.Is on an *EtagMismatchError.
	ErrEtagMismatch = errors.New("etag does not match the current version")
	// ErrUnavailable wraps failures to read or write the underlying storage
	// (full disk, I/O error, closed store). Nothing was written, unless the
	// error is also ErrOutcomeUnknown.
	ErrUnavailable = errors.New("store unavailable")
	// ErrOutcomeUnknown is an ErrUnavailable after which the call may have
	// been stored: the store lost the database while committing it.
	ErrOutcomeUnknown = fmt.Errorf("%w: the call may or may not have been stored", ErrUnavailable)
	// ErrInvalidRecord is a record that cannot be encoded (a string that is
	// not UTF-8). It is the call's fault, not the store's: nothing of the
	// call is written, and the store stays healthy.
	ErrInvalidRecord = errors.New("record cannot be encoded")
)

// EtagMismatchError reports a stale etag, with the etag now current.
type EtagMismatchError struct {
	Current string
}

func (e *EtagMismatchError) Error() string {
	return fmt.Sprintf("%v (current etag %q)", ErrEtagMismatch, e.Current)
}

// Is makes errors.Is(err, ErrEtagMismatch) true.
func (e *EtagMismatchError) Is(target error) bool { return target == ErrEtagMismatch }

// Write is one change to one plan, committed as a single transaction.
type Write struct {
	// Plan holds every client-settable field of the new version. The store
	// sets version, etag, create/update time and created_by/updated_by.
	Plan *careplanv1.CarePlan
	// MatchEtag is required for an update and must equal the current etag.
	// It is ignored on create.
	MatchEtag string
	Actor     *careplanv1.Actor
	// RequestKey, when not empty, makes the write idempotent: a later write
	// with the same key returns this write's result and writes nothing.
	RequestKey string
	// Audit is recorded in the same transaction, with outcome OK and
	// plan_version set by the store. Sequence and prev_hash are the store's.
	Audit *careplanv1.AuditEvent
	// Now is the commit time to record; zero means time.Now().
	Now time.Time
}

// Access is a break-glass read: it is recorded in the revision log (so
// watchers see it) and in the audit log, in one transaction.
type Access struct {
	Plan   *careplanv1.CarePlan
	Actor  *careplanv1.Actor
	Reason string
	Audit  *careplanv1.AuditEvent
	Now    time.Time
}

// PlanQuery selects plans related to one organisation, ordered by NHS number.
type PlanQuery struct {
	// Org is the ODS code whose related plans are listed. Required.
	Org string
	// After is the last NHS number of the previous page; "" starts at the
	// beginning.
	After string
	Limit int
	// MaxBytes, when positive, also bounds the page in bytes: the store
	// stops before the plan that would take the stored bodies returned
	// past it (see Budget) and continues after the last one returned.
	MaxBytes int
	// Optional filters.
	Status          careplanv1.CarePlan_Status
	CoordinatorID   string
	ReviewDueBefore string // YYYY-MM-DD: next_review_date < this
}

// AuditQuery selects audit events, in sequence order.
type AuditQuery struct {
	// NhsNumber, when set, selects only events about that plan.
	NhsNumber string
	// Org, when set, limits the result to events made by the organisation's
	// users or about plans related to it now.
	Org string
	// AfterSequence is the last sequence of the previous page.
	AfterSequence int64
	Limit         int
	// Optional time range: Start <= time < End.
	Start, End time.Time
}

// CommitObserver hears of each group commit, for metrics: how many calls
// shared it, how long it took to make them durable (bbolt: writing pages
// and fsyncing; PostgreSQL: the whole transaction, which holds the counters
// row throughout), and whether it failed.
type CommitObserver interface {
	ObserveCommit(ops int, durable time.Duration, err error)
}

// HealthReporter is implemented by stores that know when they cannot write
// (full disk, I/O errors), so the server can report NOT_SERVING until they
// recover by themselves.
type HealthReporter interface {
	// OnHealthChange registers fn, called on every change of writability.
	OnHealthChange(fn func(writable bool))
}

// Backuper is implemented by stores that can stream a consistent snapshot
// of everything they hold while writes continue.
type Backuper interface {
	// Backup writes the snapshot to w. size is called first with the
	// snapshot's total size.
	Backup(ctx context.Context, w io.Writer, size func(int64)) (int64, error)
}

// RequestPruner is implemented by stores that can forget old request keys,
// so that idempotency records do not pile up for ever.
type RequestPruner interface {
	// PruneRequests forgets up to limit request keys of writes made before
	// before, oldest first, and reports how many it forgot. A retry with a
	// forgotten key is a new write. The plans and versions stay.
	PruneRequests(ctx context.Context, before time.Time, limit int) (int, error)
}

// Store is the storage contract. Implementations are safe for concurrent use.
type Store interface {
	// Create stores the first version of a plan. ErrAlreadyExists if the
	// person has one.
	Create(ctx context.Context, w Write) (*careplanv1.CarePlan, error)
	// Update stores a new version. ErrNotFound, or *EtagMismatchError when
	// w.MatchEtag is not the current etag.
	Update(ctx context.Context, w Write) (*careplanv1.CarePlan, error)
	// Get returns the current version. ErrNotFound if there is none.
	Get(ctx context.Context, nhsNumber string) (*careplanv1.CarePlan, error)
	// GetStored returns the current version undecoded, with the read facts
	// for a caller from org (an ODS code, any case). ErrNotFound if there
	// is none.
	GetStored(ctx context.Context, nhsNumber, org string) (*StoredPlan, error)
	// LookupRequest returns the result of an earlier write made with
	// requestKey, or ok=false.
	LookupRequest(ctx context.Context, requestKey string) (plan *careplanv1.CarePlan, ok bool, err error)
	// ListVersions returns up to limit versions after afterVersion, oldest
	// first. ErrNotFound if the plan does not exist.
	ListVersions(ctx context.Context, nhsNumber string, afterVersion int64, limit int) ([]*careplanv1.CarePlan, error)
	// ListVersionsWithin is ListVersions bounded in bytes too (see Budget:
	// at least one version when there is one). more reports that versions
	// remain after those returned.
	ListVersionsWithin(ctx context.Context, nhsNumber string, afterVersion int64, limit, maxBytes int) (versions []*careplanv1.CarePlan, more bool, err error)
	// ListPlans returns up to q.Limit current plans related to q.Org, and
	// the NHS number to continue after ("" when there are no more). It may
	// return fewer than q.Limit with a non-empty continuation when it
	// stopped scanning early. Plans come as stored (see StoredPlan).
	ListPlans(ctx context.Context, q PlanQuery) (plans []*StoredPlan, next string, err error)

	// RecordAccess durably records a break-glass read.
	RecordAccess(ctx context.Context, a Access) error
	// AppendAudit durably appends audit events (reads, denied and failed
	// calls), in order.
	AppendAudit(ctx context.Context, events ...*careplanv1.AuditEvent) error
	// ListAudit returns up to q.Limit events and the sequence to continue
	// after (0 when there are no more).
	ListAudit(ctx context.Context, q AuditQuery) (events []*careplanv1.AuditEvent, next int64, err error)

	// Events returns up to limit change-feed events with revision >
	// afterRevision, in revision order, each with the plan version it names.
	Events(ctx context.Context, afterRevision int64, limit int) ([]*careplanv1.CarePlanEvent, error)
	// EventsWithin is Events bounded in bytes too (see Budget: at least
	// one event when there is one), so a reader of large plans holds no
	// more than maxBytes of them, whatever limit says.
	EventsWithin(ctx context.Context, afterRevision int64, limit, maxBytes int) ([]*careplanv1.CarePlanEvent, error)
	// Revision returns the latest committed revision.
	Revision(ctx context.Context) (int64, error)
	// WaitRevision blocks until a revision > afterRevision is committed or
	// ctx ends.
	WaitRevision(ctx context.Context, afterRevision int64) error

	Close() error
}
