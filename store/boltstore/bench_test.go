package boltstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store/boltstore"
)

// BenchmarkAppendAuditParallel is the store's share of an audited read: many
// callers appending one event each, sharing group commits.
func BenchmarkAppendAuditParallel(b *testing.B) {
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "careplan.db"), boltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetParallelism(25) // 50 callers on 2 CPUs, as in go run ./bench
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			ev := &careplanv1.AuditEvent{
				Time: timestamppb.Now(), Subject: "nurse-1", OrgCode: fixture.TrustOrg,
				OrgType: careplanv1.Organisation_TYPE_NHS, Roles: []string{"careplan:read"},
				Method: "/careplan.v1.CarePlanService/GetCarePlan", NhsNumber: fixture.NHSNumber(i % 10000),
				PlanVersion: 1, Outcome: "OK",
			}
			if err := s.AppendAudit(context.Background(), ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}
