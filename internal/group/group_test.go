package group

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"testing"
)

func TestFillTakesWhatIsQueuedUpToMax(t *testing.T) {
	ops := make(chan int, 10)
	for i := range 5 {
		ops <- i
	}
	got := Fill([]int{-1}, ops, 4)
	if want := []int{-1, 0, 1, 2}; !slices.Equal(got, want) {
		t.Fatalf("Fill = %v, want %v", got, want)
	}
	if len(ops) != 2 {
		t.Fatalf("%d left queued, want 2", len(ops))
	}
	if got := Fill(nil, ops, 10); !slices.Equal(got, []int{3, 4}) {
		t.Fatalf("second Fill = %v, want [3 4]", got)
	}
	if got := Fill(nil, ops, 10); len(got) != 0 {
		t.Fatalf("Fill on an empty idle queue = %v, want nothing", got)
	}
}

// A goroutine that is ready to run and about to queue joins the group: on
// one P it can only run while Fill yields.
func TestFillLetsRunnableCallersJoin(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ops := make(chan int, 10)
	go func() { ops <- 7 }()
	if got := Fill(nil, ops, 10); !slices.Equal(got, []int{7}) {
		t.Fatalf("Fill = %v, want [7]: the runnable caller did not get to queue", got)
	}
}

func TestSubmit(t *testing.T) {
	closed := errors.New("closed")
	never := make(chan struct{})

	// Not taken: the caller's context ends the wait, or the loop closing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Submit(ctx, make(chan int), 1, nil, never, closed); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled while queued: %v, want context.Canceled", err)
	}
	closing := make(chan struct{})
	close(closing)
	if err := Submit(context.Background(), make(chan int), 1, nil, closing, closed); err != closed {
		t.Fatalf("loop closing: %v, want its error", err)
	}

	// Taken: the outcome is reported, though the context ends meanwhile.
	ops, done := make(chan int), make(chan error, 1)
	ctx, cancel = context.WithCancel(context.Background())
	committed := errors.New("committed")
	go func() {
		<-ops
		cancel()
		done <- committed
	}()
	if err := Submit(ctx, ops, 1, done, never, closed); err != committed {
		t.Fatalf("taken, then the context ended: %v, want the loop's result", err)
	}
}
