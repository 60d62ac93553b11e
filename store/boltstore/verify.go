package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// VerifyAudit walks the audit hash chain of the store file at path, offline
// (it needs the file lock, so the server must be stopped, or point it at a
// backup), then on through any events a crash left in the audit journal
// beside it. It returns how many events it checked; the error names the
// first broken link.
func VerifyAudit(path string) (int64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var (
		v       store.ChainVerifier
		storeID []byte
	)
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		if b == nil {
			return fmt.Errorf("%s is not a careplan store (no audit bucket)", path)
		}
		c := b.Cursor()
		for k, raw := c.First(); k != nil; k, raw = c.Next() {
			ev := &careplanv1.AuditEvent{}
			if err := proto.Unmarshal(raw, ev); err != nil {
				return fmt.Errorf("audit chain broken at sequence %d: event cannot be decoded: %v", binary.BigEndian.Uint64(k), err)
			}
			if got := binary.BigEndian.Uint64(k); ev.GetSequence() != int64(got) {
				return fmt.Errorf("audit chain broken at sequence %d: the event says it is sequence %d", got, ev.GetSequence())
			}
			if err := v.NextStored(ev, raw); err != nil {
				return err
			}
		}
		storeID = bytes.Clone(tx.Bucket(bucketMeta).Get(keyStoreID))
		if head := tx.Bucket(bucketMeta).Get(keyAuditHead); !bytes.Equal(head, v.Head()) {
			return fmt.Errorf("audit chain broken after sequence %d: the recorded head does not match the last event (events were removed or the last one altered)", v.Count)
		}
		return nil
	})
	if err != nil {
		return v.Count, err
	}
	recs, lost, err := readJournal(path+JournalSuffix, storeID, uint64(v.Count))
	if err == nil {
		recs, err = after(recs, lost, uint64(v.Count), v.Head())
	}
	for _, r := range recs {
		if err != nil {
			break
		}
		ev := &careplanv1.AuditEvent{}
		if err = proto.Unmarshal(r.body, ev); err == nil {
			err = v.NextStored(ev, r.body)
		}
	}
	return v.Count, err
}
