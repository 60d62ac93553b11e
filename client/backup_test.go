package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

var admin = testserver.Caller{Subject: "ops-1", Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleAdmin}}

// TestBackupRestores takes a backup, checks it against the size the server
// announced and opens it with bbolt, then restores it (a server started on
// the file) and reads the plan back.
func TestBackupRestores(t *testing.T) {
	s, _ := start(t)
	nhs := testserver.CreatePlan(t, s.Client(t, testserver.TrustUser), 1).GetNhsNumber()
	var announced int64
	c := s.Client(t, admin, client.WithDialOptions(onBackupChunk(func(r *careplanv1.BackupResponse) {
		announced = max(announced, r.GetTotalBytes())
	})))

	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.Backup(t.Context(), f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if n != info.Size() || n != announced || n == 0 {
		t.Fatalf("Backup returned %d, file has %d bytes, server announced %d", n, info.Size(), announced)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatalf("backup does not open with bbolt: %v", err)
	}
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("plans")); b == nil || b.Get([]byte(nhs)) == nil {
			return errors.New("no plan in the plans bucket")
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	restored := testserver.StartWith(t, testserver.Settings{Path: path})
	if _, err := restored.Client(t, testserver.TrustUser).Get(t.Context(), nhs); err != nil {
		t.Fatalf("Get from the restored server: %v", err)
	}
}

// TestBackupDetectsShortStream: the client drops the last byte of each
// chunk, as a faulty proxy might, so the bytes received fall short of the
// announced size and Backup must fail rather than pass it off as good.
func TestBackupDetectsShortStream(t *testing.T) {
	s, _ := start(t)
	testserver.CreatePlan(t, s.Client(t, testserver.TrustUser), 1)
	lossy := onBackupChunk(func(r *careplanv1.BackupResponse) { r.Data = r.Data[:len(r.Data)-1] })
	var buf bytes.Buffer
	n, err := s.Client(t, admin, client.WithDialOptions(lossy)).Backup(t.Context(), &buf)
	if err == nil || n != int64(buf.Len()) {
		t.Fatalf("Backup of a short stream = %d, %v; want an error", n, err)
	}
}

func TestBackupNeedsAdmin(t *testing.T) {
	s, _ := start(t)
	var buf bytes.Buffer
	n, err := s.Client(t, testserver.TrustUser).Backup(t.Context(), &buf)
	if !errors.Is(err, client.ErrPermissionDenied) || n != 0 || buf.Len() != 0 {
		t.Fatalf("Backup without careplan:admin = %d, %v; want ErrPermissionDenied and nothing written", n, err)
	}
}

// onBackupChunk is a client stream interceptor that passes each backup
// chunk received to f before the client sees it.
func onBackupChunk(f func(*careplanv1.BackupResponse)) grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		cs, err := streamer(ctx, desc, cc, method, opts...)
		return chunkStream{cs, f}, err
	})
}

type chunkStream struct {
	grpc.ClientStream
	f func(*careplanv1.BackupResponse)
}

func (s chunkStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if r, ok := m.(*careplanv1.BackupResponse); ok && err == nil {
		s.f(r)
	}
	return err
}
