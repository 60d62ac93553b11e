package boltstore

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/careplan/careplan/internal/fixture"
	"github.com/careplan/careplan/store"
)

// mappedRSS is how much of the file at path is resident in this process's
// page tables, from /proc/self/smaps.
func mappedRSS(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-"):
			in = len(fields) == 6 && fields[5] == path // a mapping's header line
		case in && fields[0] == "Rss:":
			var kb int64
			for _, c := range fields[1] {
				kb = kb*10 + int64(c-'0')
			}
			total += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}

// fill creates n plans of about 4 KB and returns their NHS numbers.
func fill(t *testing.T, s *Store, from, n int) []string {
	t.Helper()
	var nhs []string
	for i := from; i < from+n; i++ {
		p := fixture.TrustPlan(fixture.NHSNumber(i))
		p.WhatMatters = strings.Repeat("what matters to me; ", 200)
		if _, err := s.Create(context.Background(), store.Write{Plan: p}); err != nil {
			t.Fatal(err)
		}
		nhs = append(nhs, p.GetNhsNumber())
	}
	return nhs
}

func readAll(t *testing.T, s *Store, nhs []string) map[string][]byte {
	t.Helper()
	out := make(map[string][]byte, len(nhs))
	for _, n := range nhs {
		sp, err := s.GetStored(context.Background(), n, "")
		if err != nil {
			t.Fatal(err)
		}
		out[n] = sp.Body
	}
	return out
}

// TestTrimMappedUnmapsAndReadsStillWork: after a trim the data file is no
// longer resident in the process, and every plan still reads back the same.
func TestTrimMappedUnmapsAndReadsStillWork(t *testing.T) {
	s, path := openStore(t, Options{MappedBytes: -1})
	nhs := fill(t, s, 1, 1500)
	before := readAll(t, s, nhs)
	if got := mappedRSS(t, path); got < 4<<20 {
		t.Fatalf("only %d bytes of the data file are mapped after reading 1500 plans; the test cannot tell a trim", got)
	}
	if trimmed, err := s.trimMapped(1 << 40); trimmed || err != nil {
		t.Fatalf("trimmed under the bound: %v, %v", trimmed, err)
	}
	if trimmed, err := s.trimMapped(0); !trimmed || err != nil {
		t.Fatalf("trimMapped(0) = %v, %v", trimmed, err)
	}
	if got := mappedRSS(t, path); got > 256<<10 {
		t.Fatalf("%d bytes of the data file still mapped after a trim", got)
	}
	after := readAll(t, s, nhs)
	for _, n := range nhs {
		if !bytes.Equal(before[n], after[n]) {
			t.Fatal("a plan read back differently after a trim")
		}
	}
}

// TestTrimWhileReadingAndGrowing trims over and over while readers check
// every plan and a writer grows the file (so bbolt remaps it).
func TestTrimWhileReadingAndGrowing(t *testing.T) {
	s, _ := openStore(t, Options{MappedBytes: -1})
	nhs := fill(t, s, 1, 300)
	want := readAll(t, s, nhs)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// repeat runs fn until stop is closed or fn fails.
	repeat := func(fn func() error) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := fn(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 4 {
		repeat(func() error {
			for _, n := range nhs {
				sp, err := s.GetStored(context.Background(), n, "")
				if err != nil {
					return err
				}
				if !bytes.Equal(sp.Body, want[n]) {
					return errors.New("a plan read back differently while trimming")
				}
			}
			return nil
		})
	}
	repeat(func() error {
		_, err := s.trimMapped(0)
		return err
	})
	size0 := s.FileSize()
	fill(t, s, 1000, 3000) // about 12 MB more: several remaps
	close(stop)
	wg.Wait()
	if s.FileSize() <= size0 {
		t.Fatal("the file did not grow, so no remap was tried")
	}
}

// unmapCounter counts the unmaps it hears of.
type unmapCounter struct{ n atomic.Int64 }

func (*unmapCounter) ObserveCommit(int, time.Duration, error) {}
func (u *unmapCounter) ObserveUnmap(time.Duration)            { u.n.Add(1) }

// TestMappedBoundLoop: with a bound, the store's own loop unmaps pages, and
// tells its observer.
func TestMappedBoundLoop(t *testing.T) {
	var seen unmapCounter
	s, path := openStore(t, Options{MappedBytes: 1, MappedCheckInterval: 5 * time.Millisecond, Observer: &seen})
	nhs := fill(t, s, 1, 1500)
	readAll(t, s, nhs)
	deadline := time.Now().Add(10 * time.Second)
	for mappedRSS(t, path) > 256<<10 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes of the data file still mapped with a 1-byte bound", mappedRSS(t, path))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if seen.n.Load() == 0 {
		t.Error("the observer heard of no unmap")
	}
}
