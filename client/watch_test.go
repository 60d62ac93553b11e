package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
	"github.com/careplan/careplan/server"
)

// watching is a Watch running in the background.
type watching struct {
	events chan *careplanv1.CarePlanEvent // every event fn was given
	cancel context.CancelFunc
	done   chan struct{}
	last   int64 // Watch's results, once done is closed
	err    error
}

// watchInBackground runs c.Watch from from. Its fn calls hook (if any) and
// then hands the event to the test.
func watchInBackground(t *testing.T, c *client.Client, from int64, hook func(*careplanv1.CarePlanEvent)) *watching {
	ctx, cancel := context.WithCancel(t.Context())
	w := &watching{events: make(chan *careplanv1.CarePlanEvent, 1000), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.last, w.err = c.Watch(ctx, from, func(ev *careplanv1.CarePlanEvent) error {
			if hook != nil {
				hook(ev)
			}
			w.events <- ev
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-w.done })
	return w
}

// next returns the next n events fn was given, or fails after a while.
func (w *watching) next(t *testing.T, n int) []int64 {
	t.Helper()
	var revs []int64
	timeout := time.After(15 * time.Second)
	for len(revs) < n {
		select {
		case ev := <-w.events:
			revs = append(revs, ev.GetRevision())
		case <-w.done:
			t.Fatalf("Watch ended after %d of %d events: %v", len(revs), n, w.err)
		case <-timeout:
			t.Fatalf("only %d of %d events arrived: %v", len(revs), n, revs)
		}
	}
	return revs
}

// stop ends the watch and checks that it ended because of that, having
// given fn nothing more than the test already took.
func (w *watching) stop(t *testing.T, wantLast int64) {
	t.Helper()
	w.cancel()
	<-w.done
	if !errors.Is(w.err, context.Canceled) || w.last != wantLast {
		t.Errorf("Watch = %d, %v; want %d, context.Canceled", w.last, w.err, wantLast)
	}
	if n := len(w.events); n != 0 {
		t.Errorf("fn was given %d more events than were written", n)
	}
}

// wantSequence fails unless revs is from+1, from+2, … with no gap or repeat.
func wantSequence(t *testing.T, revs []int64, from int64) {
	t.Helper()
	for i, r := range revs {
		if r != from+int64(i)+1 {
			t.Fatalf("revisions %v: want %d..%d each once, in order", revs, from+1, from+int64(len(revs)))
		}
	}
}

// watchStarts returns the from_revision of each WatchCarePlans call the
// server received.
func watchStarts(tap *wiretap) []int64 {
	var out []int64
	for _, req := range requestsTo[*careplanv1.WatchCarePlansRequest](tap, "WatchCarePlans") {
		out = append(out, req.GetFromRevision())
	}
	return out
}

func TestWatchResumesAcrossRestart(t *testing.T) {
	s, tap := start(t)
	trust := s.Client(t, testserver.TrustUser)
	nhs := testserver.CreatePlan(t, trust, 1).GetNhsNumber()
	for i := range 3 {
		setWhatMatters(t, trust, nhs, fmt.Sprintf("before %d", i))
	}
	w := watchInBackground(t, s.Client(t, testserver.Council), 0, nil)
	revs := w.next(t, 4)

	s.Restart() // cuts the stream; the watcher must come back by itself
	for i := range 3 {
		setWhatMatters(t, trust, nhs, fmt.Sprintf("while the watcher is away %d", i))
	}
	revs = append(revs, w.next(t, 3)...)
	for i := range 2 {
		setWhatMatters(t, trust, nhs, fmt.Sprintf("after it is back %d", i))
	}
	revs = append(revs, w.next(t, 2)...)
	w.stop(t, 9)
	wantSequence(t, revs, 0)

	starts := watchStarts(tap)
	if len(starts) < 2 || starts[0] != 0 || starts[len(starts)-1] != 4 {
		t.Errorf("WatchCarePlans calls from %v, want 0 then a resume from 4", starts)
	}
}

// TestWatchResumesAfterTooSlow stalls fn on the first event while 100 plans
// of ~8 KB are written. The stream's small flow-control window fills, the
// server cuts the watcher off (WATCH_TOO_SLOW), and Watch must resume from
// the revision the server names, giving fn every revision exactly once.
func TestWatchResumesAfterTooSlow(t *testing.T) {
	s, tap := start(t, func(c *server.Config) { c.Watch = server.WatchOptions{SendTimeout: 200 * time.Millisecond} })
	trust := s.Client(t, testserver.TrustUser)
	nhs := testserver.CreatePlan(t, trust, 1).GetNhsNumber()
	slow := s.Client(t, testserver.Council, client.WithDialOptions(
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10)))

	stalled, written := make(chan struct{}), make(chan struct{})
	w := watchInBackground(t, slow, 0, func(ev *careplanv1.CarePlanEvent) {
		if ev.GetRevision() == 1 {
			close(stalled)
			<-written
			time.Sleep(500 * time.Millisecond) // well past the send timeout
		}
	})
	<-stalled
	const writes = 100
	for i := range writes {
		setWhatMatters(t, trust, nhs, fmt.Sprintf("%d %s", i, strings.Repeat("x", 8000)))
	}
	close(written)
	revs := w.next(t, writes+1)
	w.stop(t, writes+1)
	wantSequence(t, revs, 0)

	if starts := watchStarts(tap); len(starts) < 2 || starts[1] <= 1 {
		t.Errorf("WatchCarePlans calls from %v, want a resume after a cut-off", starts)
	}
}

// TestWatchRefused: a refusal is final, so Watch returns it as an *Error at
// once instead of retrying.
func TestWatchRefused(t *testing.T) {
	noRead := testserver.Caller{Subject: "ig-1", Org: "RXA", OrgType: "nhs", Roles: []string{auth.RoleAuditRead}}
	tests := []struct {
		name       string
		opts       func(*testserver.Server) []client.Option
		wantCode   codes.Code
		wantReason string
		sentinel   error
	}{
		{
			name:       "no careplan:read",
			opts:       func(s *testserver.Server) []client.Option { return []client.Option{client.WithToken(s.Token(noRead))} },
			wantCode:   codes.PermissionDenied,
			wantReason: "MISSING_ROLE",
			sentinel:   client.ErrPermissionDenied,
		},
		{
			name:       "no token",
			opts:       func(*testserver.Server) []client.Option { return nil },
			wantCode:   codes.Unauthenticated,
			wantReason: "MISSING_TOKEN",
			sentinel:   client.ErrUnauthenticated,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, tap := start(t)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			last, err := dial(t, s.Addr, tt.opts(s)...).Watch(ctx, 7, func(*careplanv1.CarePlanEvent) error {
				t.Error("fn called for a refused watch")
				return nil
			})
			var e *client.Error
			if !errors.As(err, &e) || e.Code != tt.wantCode || e.Reason != tt.wantReason || !errors.Is(err, tt.sentinel) || last != 7 {
				t.Fatalf("Watch = %d, %v; want 7 and %v %s", last, err, tt.wantCode, tt.wantReason)
			}
			if n := len(tap.callsTo("WatchCarePlans")); n != 1 {
				t.Errorf("server saw %d watch calls, want 1 (no retry)", n)
			}
		})
	}
}

// TestWatchStopsOnFnError: fn's error ends the watch, and the revision
// returned is the last one fn accepted, so a resume sees the refused event
// again.
func TestWatchStopsOnFnError(t *testing.T) {
	s, _ := start(t)
	trust := s.Client(t, testserver.TrustUser)
	nhs := testserver.CreatePlan(t, trust, 1).GetNhsNumber()
	setWhatMatters(t, trust, nhs, "second")
	setWhatMatters(t, trust, nhs, "third")
	full := errors.New("disk full")
	var seen []int64
	last, err := trust.Watch(t.Context(), 0, func(ev *careplanv1.CarePlanEvent) error {
		seen = append(seen, ev.GetRevision())
		if ev.GetRevision() == 2 {
			return full
		}
		return nil
	})
	if err != full || last != 1 || len(seen) != 2 {
		t.Fatalf("Watch = %d, %v after %v; want 1 and fn's error after [1 2]", last, err, seen)
	}
}
