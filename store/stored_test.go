package store

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

func TestNewStoredPlanReadsSharingObjection(t *testing.T) {
	for _, objection := range []bool{false, true} {
		p := fixture.Plan(fixture.NHSNumber(1))
		p.SharingObjection = objection
		body, err := proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		p.Version = 3
		body, err = proto.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := NewStoredPlan(body, true)
		if err != nil {
			t.Fatal(err)
		}
		if sp.Facts.SharingObjection != objection || !sp.Facts.Related || sp.Version != 3 || sp.NhsNumber != p.GetNhsNumber() {
			t.Errorf("objection %v: got %+v", objection, sp)
		}
	}
	// A later occurrence wins, as in proto.Unmarshal.
	body, _ := proto.Marshal(&careplanv1.CarePlan{SharingObjection: true})
	body = protowire.AppendTag(body, sharingObjection, protowire.VarintType)
	body = protowire.AppendVarint(body, 0) // proto3 never writes a false itself
	if sp, err := NewStoredPlan(body, false); err != nil || sp.Facts.SharingObjection {
		t.Errorf("repeated field: %+v, %v; want the last (false)", sp, err)
	}
	if _, err := NewStoredPlan([]byte{0x0a, 0x05, 0x01}, false); err == nil {
		t.Error("truncated body: no error")
	}
}
