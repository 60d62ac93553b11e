//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/devmode"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/store"
	"github.com/careplan/careplan/store/boltstore"
)

// nhsNumbers returns the first n fixture NHS numbers, computed once so the
// read loops spend no client CPU making them.
func nhsNumbers(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fixture.NHSNumber(i)
	}
	return out
}

// benchPlan is fixture.TrustPlan (which the trust RXA may create and read)
// with what_matters padded so the plan the client sends marshals to size
// bytes. withCouncil keeps the council team member, which is what relates
// the council C123 to the plan; the list figure needs exactly a known number
// of plans related to one organisation.
func benchPlan(nhs string, size int, withCouncil bool) *careplanv1.CarePlan {
	p := fixture.TrustPlan(nhs)
	if !withCouncil {
		p.Team = p.Team[:1] // the coordinator only
	}
	const filler = " We talk about the garden every visit and plan the next season together."
	base := p.WhatMatters
	// The length prefix of the field grows with the text, so settle the
	// padding in a few steps rather than by one subtraction.
	for range 4 {
		pad := size - proto.Size(p)
		if pad == 0 {
			break
		}
		n := max(0, len(p.WhatMatters)-len(base)+pad)
		p.WhatMatters = base + strings.Repeat(filler, n/len(filler)+1)[:n]
	}
	return p
}

// trustActor is who the loaded plans were created by: the dev NHS caller,
// whose token the read phases use.
func trustActor() *auth.Principal {
	c := devmode.Callers[0]
	return &auth.Principal{Subject: c.Subject, Org: c.Org, OrgType: careplanv1.Organisation_TYPE_NHS, Roles: c.Roles, Issuer: devmode.Issuer}
}

// loadSpec says what to write into a store file before its server starts.
type loadSpec struct {
	Path      string
	NHS       []string // one plan per number
	PlanBytes int
	// WithCouncil is how many of the plans (the first ones) relate to the
	// council, for the list figure.
	WithCouncil int
	Callers     int
	Timeout     time.Duration
}

// loadReport is what loading measured, plus how the file's bytes are spent.
type loadReport struct {
	Result    *result
	FileBytes int64
	Buckets   []bucketUse
}

type bucketUse struct {
	Name  string
	Bytes int64 // pages allocated to the bucket
	Keys  int
}

// load writes spec.NHS plans straight into a bbolt store file (see fill),
// then measures how the file's bytes are spent.
func load(ctx context.Context, spec loadSpec) (*loadReport, error) {
	st, err := boltstore.Open(spec.Path, boltstore.Options{})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	r, err := fill(ctx, st, spec)
	if err != nil {
		return nil, err
	}
	buckets, err := bucketUsage(st.DB())
	if err != nil {
		return nil, err
	}
	if err := st.Close(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(spec.Path)
	if err != nil {
		return nil, err
	}
	return &loadReport{Result: r, FileBytes: fi.Size(), Buckets: buckets}, nil
}

// fill writes spec.NHS plans into st with Store.Create from many
// goroutines, so the store's commit path sees concurrent writers as it would
// concurrent clients, but without gRPC: a million plans over the wire would
// measure the client, not the store. Each create carries the audit event the
// server would have written, so bytes on disk per plan are realistic.
// spec.Path only names the store in messages.
func fill(ctx context.Context, st store.Store, spec loadSpec) (*result, error) {
	p := trustActor()
	withCouncil := benchPlan(spec.NHS[0], spec.PlanBytes, true)
	without := benchPlan(spec.NHS[0], spec.PlanBytes, false)
	var done atomic.Int64
	stopProgress := progress(spec.Path, int64(len(spec.NHS)), &done)
	r := drive(ctx, phase{Name: "load", Callers: spec.Callers, Duration: spec.Timeout, MaxOps: int64(len(spec.NHS))},
		func(ctx context.Context, _ int, i int64) error {
			tmpl := without
			if i < int64(spec.WithCouncil) {
				tmpl = withCouncil
			}
			plan := proto.CloneOf(tmpl)
			plan.NhsNumber = spec.NHS[i]
			_, err := st.Create(ctx, store.Write{Plan: plan, Actor: p.Actor(), Audit: &careplanv1.AuditEvent{
				Time: timestamppb.Now(), Subject: p.Subject, OrgCode: p.Org, OrgType: p.OrgType, Roles: p.Roles,
				Method: careplanv1.CarePlanService_CreateCarePlan_FullMethodName, NhsNumber: plan.NhsNumber,
			}})
			if err == nil {
				done.Add(1)
			}
			return err
		})
	stopProgress()
	if r.Errors > 0 {
		return nil, fmt.Errorf("load %s: %d creates failed, first: %v", spec.Path, r.Errors, r.FirstErr)
	}
	if r.Ops != int64(len(spec.NHS)) {
		return nil, fmt.Errorf("load %s: only %d of %d plans within %v (raise -load-timeout)", spec.Path, r.Ops, len(spec.NHS), spec.Timeout)
	}
	return r, nil
}

// progress prints how far a long load has got every 30 seconds, so a
// million-plan run shows it is alive. The returned func stops it.
func progress(what string, total int64, done *atomic.Int64) func() {
	stop := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				n := done.Load()
				fmt.Fprintf(os.Stderr, "  loading %s: %d/%d plans, %.0f/s\n", what, n, total, float64(n)/time.Since(start).Seconds())
			}
		}
	}()
	return func() { close(stop); <-finished }
}

// bucketUsage walks every top-level bucket for the pages it holds, so the
// bytes-per-plan figure can say where the bytes go.
func bucketUsage(db *bolt.DB) ([]bucketUse, error) {
	var out []bucketUse
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			s := b.Stats()
			out = append(out, bucketUse{Name: string(name), Bytes: int64(s.BranchAlloc + s.LeafAlloc), Keys: s.KeyN})
			return nil
		})
	})
	return out, err
}
