package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/careplan/careplan/client"
)

const (
	// maxCheckErrors bounds how many tx.Check errors are reported; one
	// corrupt page can produce thousands.
	maxCheckErrors = 10
	// verifyParallelism bounds the plans verified at once.
	verifyParallelism = 8
	// verifyLimit bounds the verification of one cycle.
	verifyLimit = 2 * time.Minute
)

// checkBolt opens the data file read-only, as a second process would after
// the crash, and runs bbolt's consistency check over every page.
func checkBolt(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var errs []error
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		// Drain the channel fully: Check stops only when it is read.
		for e := range tx.Check() {
			if n++; n <= maxCheckErrors {
				errs = append(errs, e)
			}
		}
		return nil
	})
	if n > maxCheckErrors {
		errs = append(errs, fmt.Errorf("... and %d more", n-maxCheckErrors))
	}
	return errors.Join(append(errs, err)...)
}

// verdict is what a verification found.
type verdict struct {
	lost   []string // one line per acknowledged write that is missing
	landed int      // unknown writes the server holds
}

// verify checks, against the restarted server, that every acknowledged
// write is stored: the plan's current version is at least the acknowledged
// one, and its history holds that version with that write's marker. It also
// counts which unknown writes landed. And every stored version must be one
// write's, once: acknowledged, unknown, or earlier, the writes left in
// doubt before (not counted). An error means the check itself could not
// run, or the history is malformed (a version no write made, or a write
// stored twice); not that a write was lost.
func verify(ctx context.Context, cl *client.Client, acked, unknown, earlier []write) (verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, verifyLimit)
	defer cancel()
	byPlan := map[string][]write{}
	for _, w := range acked {
		byPlan[w.nhs] = append(byPlan[w.nhs], w)
	}
	for _, w := range unknown {
		byPlan[w.nhs] = append(byPlan[w.nhs], w)
	}
	made := map[string]bool{} // every marker a write carried
	for _, ws := range [][]write{acked, unknown, earlier} {
		for _, w := range ws {
			made[w.marker] = true
		}
	}
	var (
		mu   sync.Mutex
		v    verdict
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, verifyParallelism)
	)
	for nhs, writes := range byPlan {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			pv, err := verifyPlan(ctx, cl, nhs, writes, made)
			mu.Lock()
			defer mu.Unlock()
			v.lost = append(v.lost, pv.lost...)
			v.landed += pv.landed
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	slices.Sort(v.lost)
	return v, errors.Join(errs...)
}

// verifyPlan checks one plan's writes (acknowledged ones have a version,
// unknown ones do not), and that each of its versions carries the marker
// of a write in made, each marker once.
func verifyPlan(ctx context.Context, cl *client.Client, nhs string, writes []write, made map[string]bool) (verdict, error) {
	var v verdict
	var current int64
	cur, err := cl.Get(ctx, nhs)
	switch {
	case errors.Is(err, client.ErrNotFound):
		// Fine only if no write to it was acknowledged (checked below).
	case err != nil:
		return v, fmt.Errorf("get %s: %w", nhs, err)
	default:
		current = cur.GetVersion()
	}
	stored := map[int64]string{} // version → what_matters
	versionOf := map[string]int64{}
	if current > 0 {
		history, err := cl.History(ctx, nhs)
		if err != nil {
			return v, fmt.Errorf("history %s: %w", nhs, err)
		}
		for i, h := range history {
			if h.GetVersion() != int64(i+1) {
				return v, fmt.Errorf("history %s: entry %d is version %d; want versions 1..n, oldest first", nhs, i, h.GetVersion())
			}
			m := h.GetWhatMatters()
			if !made[m] {
				return v, fmt.Errorf("history %s: version %d holds %q, which no write made", nhs, h.GetVersion(), m)
			}
			if ver, twice := versionOf[m]; twice {
				return v, fmt.Errorf("history %s: versions %d and %d both hold %q: a write stored twice", nhs, ver, h.GetVersion(), m)
			}
			stored[h.GetVersion()], versionOf[m] = m, h.GetVersion()
		}
		if int64(len(history)) != current {
			return v, fmt.Errorf("history %s: %d versions, but the current plan is version %d", nhs, len(history), current)
		}
	}
	for _, w := range writes {
		if w.version == 0 {
			for _, m := range stored {
				if m == w.marker {
					v.landed++
					break
				}
			}
			continue
		}
		if got, ok := stored[w.version]; !ok || got != w.marker {
			v.lost = append(v.lost, fmt.Sprintf("%s version %d (%s): current version %d, stored what_matters %q",
				nhs, w.version, w.marker, current, got))
		}
	}
	return v, nil
}
