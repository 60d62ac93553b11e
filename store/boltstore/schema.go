package boltstore

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Every top-level bucket, declared in one place. Values are marshalled
// protobuf unless noted.
var (
	// meta: "schema" → schemaVersion (8 bytes, big endian); "audit_head" →
	// SHA-256 of the last audit event.
	bucketMeta = []byte("meta")
	// plans: nhs_number → current version (8 bytes). The body lives in
	// versions, so the current plan is never stored twice.
	bucketPlans = []byte("plans")
	// versions: nhs_number + version (8 bytes) → CarePlan. Append-only.
	bucketVersions = []byte("versions")
	// revisions: revision (8 bytes) → CarePlanEvent whose care_plan holds
	// only nhs_number and version; readers hydrate it from versions.
	bucketRevisions = []byte("revisions")
	// audit: sequence (8 bytes) → AuditEvent, hash-chained.
	bucketAudit = []byte("audit")
	// audit_by_nhs: epoch + nhs_number + sequence → empty, to list one
	// plan's events. The epoch (sequence >> auditEpochBits) keeps each
	// commit's inserts on a few pages near the end of the bucket, instead of
	// one random page per audited read (which cost a fifth of read
	// throughput); a lookup seeks once per epoch.
	bucketAuditByNHS = []byte("audit_by_nhs")
	// requests: request key → nhs_number + version + unix nanos.
	bucketRequests = []byte("requests")
	// requests_by_time: unix nanos (8 bytes) + request key → empty, so
	// pruning old idempotency records reads only those it deletes.
	bucketRequestsByTime = []byte("requests_by_time")
	// org_plans: ods_code + 0x00 + nhs_number → CarePlan summary (status,
	// coordinator id, next_review_date), so list filters need no plan reads.
	bucketOrgPlans = []byte("org_plans")
)

var allBuckets = [][]byte{
	bucketMeta, bucketPlans, bucketVersions, bucketRevisions,
	bucketAudit, bucketAuditByNHS, bucketRequests, bucketRequestsByTime, bucketOrgPlans,
}

// schemaVersion 2 keys audit_by_nhs by epoch; 3 adds requests_by_time.
// Older files are migrated on open.
const schemaVersion = 3

// auditEpochBits sets the epoch size of audit_by_nhs: 1024 events.
const auditEpochBits = 10

var (
	keySchema = []byte("schema")
	// keyAuditHead holds the SHA-256 of the last audit event as stored.
	keyAuditHead = []byte("audit_head")
	// keyProbe is rewritten by the recovery probe after write failures.
	keyProbe = []byte("probe")
	// keyStoreID is 16 random bytes made with the file. The audit journal
	// carries it, so a journal is replayed only into its own data file (or
	// a copy of it), never into a new one made beside an old journal.
	keyStoreID = []byte("store_id")
)

// initSchemaTx creates every bucket and checks the schema version.
func initSchemaTx(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keyStoreID) == nil {
		id := make([]byte, 16)
		if _, err := rand.Read(id); err != nil {
			return err
		}
		if err := meta.Put(keyStoreID, id); err != nil {
			return err
		}
	}
	v := meta.Get(keySchema)
	if v == nil {
		return meta.Put(keySchema, u64(schemaVersion))
	}
	if len(v) != 8 {
		return errors.New("corrupt schema version")
	}
	got := binary.BigEndian.Uint64(v)
	if got == 0 || got > schemaVersion {
		return fmt.Errorf("data file has schema version %d; this build reads %d", got, schemaVersion)
	}
	if got < 2 {
		if err := reindexAuditTx(tx); err != nil {
			return fmt.Errorf("migrate schema 1 to 2: %w", err)
		}
	}
	if got < 3 {
		if err := indexRequestsTx(tx); err != nil {
			return fmt.Errorf("migrate schema 2 to 3: %w", err)
		}
	}
	if got == schemaVersion {
		return nil
	}
	return meta.Put(keySchema, u64(schemaVersion))
}

// indexRequestsTx fills requests_by_time from requests.
func indexRequestsTx(tx *bolt.Tx) error {
	idx := tx.Bucket(bucketRequestsByTime)
	return tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
		_, _, at, err := parseRequestRecord(v)
		if err != nil {
			return err
		}
		return idx.Put(requestTimeKey(at, string(k)), nil)
	})
}

// requestRecord is the requests value: nhs_number, then the version and
// the unix nanos of the write (8 bytes each).
func requestRecord(nhs string, version, unixNanos int64) []byte {
	rec := binary.BigEndian.AppendUint64([]byte(nhs), uint64(version))
	return binary.BigEndian.AppendUint64(rec, uint64(unixNanos))
}

func parseRequestRecord(rec []byte) (nhs string, version, unixNanos int64, err error) {
	if len(rec) < 16 {
		return "", 0, 0, errors.New("corrupt request record")
	}
	n := len(rec) - 16
	return string(rec[:n]), int64(binary.BigEndian.Uint64(rec[n:])), int64(binary.BigEndian.Uint64(rec[n+8:])), nil
}

// reindexAuditTx rebuilds audit_by_nhs in the current key layout from the
// audit log itself.
func reindexAuditTx(tx *bolt.Tx) error {
	if err := tx.DeleteBucket(bucketAuditByNHS); err != nil {
		return err
	}
	idx, err := tx.CreateBucket(bucketAuditByNHS)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
		ev := &careplanv1.AuditEvent{}
		if err := proto.Unmarshal(v, ev); err != nil {
			return err
		}
		return indexAuditTx(idx, ev.GetNhsNumber(), binary.BigEndian.Uint64(k))
	})
}

// requestTimeKey is the unix nanos of a write followed by its request key.
func requestTimeKey(unixNanos int64, key string) []byte {
	return append(u64(uint64(unixNanos)), key...)
}

func u64(n uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, n)
}

// versionKey is nhs_number followed by the big-endian version, so a plan's
// versions sort oldest first.
func versionKey(nhs string, version int64) []byte {
	return binary.BigEndian.AppendUint64([]byte(nhs), uint64(version))
}

func orgPlanKey(org, nhs string) []byte {
	k := make([]byte, 0, len(org)+1+len(nhs))
	k = append(k, org...)
	k = append(k, 0)
	return append(k, nhs...)
}

func orgPrefix(org string) []byte {
	return append([]byte(org), 0)
}

func auditEpoch(seq uint64) uint64 { return seq >> auditEpochBits }

// auditByNHSKey is epoch + nhs_number + sequence.
func auditByNHSKey(nhs string, seq uint64) []byte {
	k := binary.BigEndian.AppendUint64(nil, auditEpoch(seq))
	k = append(k, nhs...)
	return binary.BigEndian.AppendUint64(k, seq)
}
