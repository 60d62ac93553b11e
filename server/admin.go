package server

import (
	"bufio"
	"bytes"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/policy"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
)

// backupChunk is the size of one BackupResponse; well under the default
// 4 MiB client receive limit.
const backupChunk = 256 << 10

// adminService implements careplan.v1.AdminService.
type adminService struct {
	careplanv1.UnimplementedAdminServiceServer
	store store.Store
}

// Backup streams a snapshot of the store. The backup holds every patient's
// record, so it is audited before the first byte is sent.
func (s *adminService) Backup(_ *careplanv1.BackupRequest, stream grpc.ServerStreamingServer[careplanv1.BackupResponse]) error {
	ctx := stream.Context()
	p := principal(ctx)
	if !p.HasRole(auth.RoleAdmin) {
		return toStatus(policy.MissingRole(auth.RoleAdmin))
	}
	b, ok := s.store.(store.Backuper)
	if !ok {
		return status.Error(codes.Unimplemented, "this store has no online backup; use the database's own")
	}
	ev := &careplanv1.AuditEvent{
		Time: timestamppb.Now(), Subject: p.Subject, OrgCode: p.Org, OrgType: p.OrgType, Roles: p.Roles,
		Method: careplanv1.AdminService_Backup_FullMethodName, Outcome: outcome(nil),
	}
	if err := appendAudit(ctx, s.store, ev); err != nil {
		return toStatus(err)
	}
	w := &chunkSender{stream: stream}
	buf := bufio.NewWriterSize(w, backupChunk)
	if _, err := b.Backup(ctx, buf, func(n int64) { w.total = n }); err != nil {
		return watchEnd(ctx, err)
	}
	if err := buf.Flush(); err != nil {
		return watchEnd(ctx, err)
	}
	return nil
}

// chunkSender turns writes into BackupResponse messages; the first carries
// the total size.
type chunkSender struct {
	stream grpc.ServerStreamingServer[careplanv1.BackupResponse]
	total  int64
	sent   bool
}

func (c *chunkSender) Write(p []byte) (int, error) {
	// Copy: bufio reuses p, and gRPC may read a sent message lazily.
	msg := &careplanv1.BackupResponse{Data: bytes.Clone(p)}
	if !c.sent {
		msg.TotalBytes, c.sent = c.total, true
	}
	if err := c.stream.Send(msg); err != nil {
		return 0, err
	}
	return len(p), nil
}
