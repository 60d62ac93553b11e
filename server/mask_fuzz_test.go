package server

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// FuzzApplyMask: any mask the validator lets through applies without a
// panic, never changes the NHS number, and leaves every top-level field the
// mask does not name as it was.
func FuzzApplyMask(f *testing.F) {
	cur, _ := proto.Marshal(fixture.Plan(fixture.NHSNumber(1)))
	other := fixture.Plan(fixture.NHSNumber(1))
	other.WhatMatters, other.Status, other.Person.GivenName = "changed", careplanv1.CarePlan_STATUS_ON_HOLD, "Bea"
	req, _ := proto.Marshal(other)
	for _, paths := range []string{"", "*", "what_matters", "person.given_name", "goals,activities", "coordinator.organisation.name", "status,person", "etag"} {
		f.Add(cur, req, paths)
	}
	f.Fuzz(func(t *testing.T, curBytes, reqBytes []byte, joined string) {
		cur, req := &careplanv1.CarePlan{}, &careplanv1.CarePlan{}
		if proto.Unmarshal(curBytes, cur) != nil || proto.Unmarshal(reqBytes, req) != nil {
			return
		}
		var paths []string
		if joined != "" {
			paths = strings.Split(joined, ",")
		}
		if len(checkMask(paths)) > 0 {
			return
		}
		next := applyMask(cur, req, paths)
		if next.GetNhsNumber() != cur.GetNhsNumber() {
			t.Fatalf("mask %q changed the NHS number", joined)
		}
		if len(paths) == 0 || paths[0] == "*" {
			return
		}
		named := map[string]bool{}
		for _, p := range paths {
			named[strings.SplitN(p, ".", 2)[0]] = true
		}
		fields := cur.ProtoReflect().Descriptor().Fields()
		for i := range fields.Len() {
			fd := fields.Get(i)
			if named[string(fd.Name())] {
				continue
			}
			if !cur.ProtoReflect().Get(fd).Equal(next.ProtoReflect().Get(fd)) {
				t.Fatalf("mask %q changed %s, which it does not name", joined, fd.Name())
			}
		}
	})
}
