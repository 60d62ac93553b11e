package server_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/fixture"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store/boltstore"
)

var admin = caller{Subject: "ops-1", Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleAdmin}}

// backup streams a backup into a file and returns its path.
func (e *env) backup(c caller) (string, error) {
	stream, err := careplanv1.NewAdminServiceClient(e.Conn).Backup(e.as(c), &careplanv1.BackupRequest{})
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	var total, got int64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", err
		}
		if total == 0 {
			total = msg.GetTotalBytes()
		}
		n, _ := f.Write(msg.GetData())
		got += int64(n)
	}
	if got != total || total == 0 {
		e.t.Fatalf("backup: received %d bytes, announced %d", got, total)
	}
	return path, nil
}

// TestBackupUnderLoadRestores takes a backup while writers run, restores it
// (a server started on the backup file) and checks it: every write
// acknowledged before the backup began is there, bbolt's consistency check
// passes, and the audit chain verifies.
func TestBackupUnderLoadRestores(t *testing.T) {
	e := newEnv(t)
	var ackedBefore []*careplanv1.CarePlan
	for i := range 20 {
		ackedBefore = append(ackedBefore, e.create(trustUser, fixture.TrustPlan(fixture.NHSNumber(700+i))))
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; i < 500 && ctx.Err() == nil; i++ {
				p := fixture.TrustPlan(fixture.NHSNumber(800 + w*1000 + i))
				if _, err := e.plans.CreateCarePlan(e.as(trustUser), &careplanv1.CreateCarePlanRequest{CarePlan: p}); err != nil && ctx.Err() == nil {
					t.Errorf("write during backup: %v", err)
					return
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // let the writers get going
	path, err := e.backup(admin)
	stop()
	wg.Wait()
	if err != nil {
		t.Fatalf("backup: %v", err)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("tx.Check on the backup: %v", err)
	}
	db.Close()
	n, err := boltstore.VerifyAudit(path)
	if err != nil || n < int64(len(ackedBefore))+1 {
		t.Fatalf("audit chain of the backup: %d events, %v", n, err)
	}
	restored := testserver.StartWith(t, testserver.Settings{Path: path})
	r := &env{Server: restored, t: t, plans: careplanv1.NewCarePlanServiceClient(restored.Conn)}
	for _, want := range ackedBefore {
		got, err := r.plans.GetCarePlan(r.as(trustUser), &careplanv1.GetCarePlanRequest{NhsNumber: want.GetNhsNumber()})
		if err != nil || got.GetEtag() != want.GetEtag() {
			t.Fatalf("restored plan: %v", err)
		}
	}
	t.Logf("backup of %d audit events restored and verified", n)
}

func TestBackupNeedsAdmin(t *testing.T) {
	e := newEnv(t)
	_, err := e.backup(trustUser)
	info, _ := wantCode(t, err, codes.PermissionDenied)
	if info.GetReason() != "MISSING_ROLE" {
		t.Fatalf("reason = %q", info.GetReason())
	}
}
