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

func TestExpCommitStats(t *testing.T) {
	s, err := boltstore.Open(filepath.Join(t.TempDir(), "careplan.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := range 2000 {
		ev := &careplanv1.AuditEvent{Time: timestamppb.Now(), Subject: "nurse-1", OrgCode: fixture.TrustOrg, Method: "/careplan.v1.CarePlanService/GetCarePlan", NhsNumber: fixture.NHSNumber(i % 10000), Outcome: "OK"}
		if err := s.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	st0 := s.DB().Stats()
	for i := range 200 {
		ev := &careplanv1.AuditEvent{Time: timestamppb.Now(), Subject: "nurse-1", OrgCode: fixture.TrustOrg, Method: "/careplan.v1.CarePlanService/GetCarePlan", NhsNumber: fixture.NHSNumber(i % 10000), Outcome: "OK"}
		if err := s.AppendAudit(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	st := s.DB().Stats()
	d := st.Sub(&st0)
	t.Logf("per commit: writes %.1f, pages alloc %.1f KB, spill %.1f, nodes %.1f, rebalance %.1f, freelist pages %d, free %d pending %d", float64(d.TxStats.GetWrite())/200, float64(d.TxStats.GetPageAlloc())/200/1024, float64(d.TxStats.GetSpill())/200, float64(d.TxStats.GetNodeCount())/200, float64(d.TxStats.GetRebalance())/200, st.FreelistInuse, st.FreePageN, st.PendingPageN)
}
