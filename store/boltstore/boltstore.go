// Package boltstore is the embedded careplan store: one bbolt file, every
// change in one transaction, concurrent writers sharing fsyncs through a
// commit loop (group commit). It is never opened with NoSync.
package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/careplan/careplan/store"
)

// Options tune the store. The zero value is usable.
type Options struct {
	// MaxBatch caps how many queued operations share one transaction and one
	// fsync. Default 512.
	MaxBatch int
	// OpenTimeout bounds the wait for the file lock held by another process.
	// Default 1s.
	OpenTimeout time.Duration
	// ProbeInterval is how often a store whose writes fail tries a small
	// write to find out whether it has recovered. Default 1s.
	ProbeInterval time.Duration
	// ProbeBytes is the size of the probe write; it should be at least the
	// largest write a caller can make. Default 1 MiB.
	ProbeBytes int
	// Observer, when set, hears of every commit (for metrics).
	Observer store.CommitObserver
	// JournalBytes is the size of the audit journal beside the data file
	// (see journal.go). Default 4 MiB; negative commits every audit event
	// to bbolt directly.
	JournalBytes int64
	// CheckpointEvents is how many journalled events start a background
	// checkpoint into bbolt. Default 256. A checkpoint that holds up the
	// calls behind it happens only when the journal is full or a plan is
	// written, and then it moves only what the last background one left.
	CheckpointEvents int
	// MappedBytes bounds the process's file-backed resident memory: past it,
	// the data file's pages are unmapped (see mapped.go). Default 128 MiB;
	// negative for no bound. Linux only.
	MappedBytes int64
	// MapAhead is how far past the end of the data file bbolt maps it at
	// open. While any read transaction is open (a backup, a page of a list)
	// bbolt cannot remap the file, so a write that grows the file past its
	// mapping waits for every one of them to end; within the mapping it
	// does not wait. Mapping ahead costs address space, and bbolt then
	// grows the file in 16 MiB steps. Zero or negative: bbolt's own
	// mapping, which on a store over 1 GB leaves up to the next whole GB.
	// Ignored on Windows, where bbolt would grow the file to the mapping,
	// and on 32-bit builds.
	MapAhead int64
	// MappedCheckInterval is how often MappedBytes is checked. Default
	// 25ms: under random reads of a large store, pages are mapped at over
	// 1 GB/s (each fault maps up to 16), and this bounds the overshoot.
	MappedCheckInterval time.Duration
}

// UnmapObserver, when the Observer also implements it, hears of each time
// the store unmapped the data file's pages (Options.MappedBytes) and how
// long that took.
type UnmapObserver interface {
	ObserveUnmap(took time.Duration)
}

// Store is a store.Store on a bbolt file.
type Store struct {
	db       *bolt.DB
	maxBatch int

	ops     chan *op // unbuffered: a send succeeds only while the loop runs
	closing chan struct{}
	stopped chan struct{}
	closeMu sync.Once
	// trimStopped is closed when the loop bounding mapped pages has
	// stopped; it is closed from the start when there is no bound.
	trimStopped chan struct{}

	// rev is the latest committed revision, for WaitRevision.
	rev store.RevisionSignal

	// txRev is the highest revision written by the batch being committed.
	// Only the commit loop goroutine touches it.
	txRev int64

	// writable is false while commits fail; the loop probes until one
	// succeeds. onHealth hears of every change.
	writable      atomic.Bool
	probeInterval time.Duration
	probeBytes    int
	observer      store.CommitObserver
	healthMu      sync.Mutex
	onHealth      func(writable bool)

	// The audit journal and what it holds that bbolt does not yet; chain is
	// the end of the audit chain across both. The commit loop owns them
	// (Open and Close too, while it is not running); journaled counts
	// pending for other goroutines, and pendingMu guards its changes for
	// pendingEvents.
	journal          *journal
	pendingMu        sync.Mutex
	pending          []journalRecord
	chain            chainState
	journaled        atomic.Int64
	checkpointEvents int
	// retryCheckpointAt is the backlog at which to try again after a
	// checkpoint failed; 0 when none has. ckptRecs is how many of pending a
	// background checkpoint is writing (0: none runs), and ckptDone carries
	// its result. Only the commit loop touches them.
	retryCheckpointAt int
	ckptRecs          int
	ckptDone          chan error
}

var _ store.Store = (*Store)(nil)

// initialMmapSize is bbolt's InitialMmapSize for Options.MapAhead: the
// file's size plus ahead, or 0 (bbolt's default) for none. 32-bit builds
// keep bbolt's default: their address space is too small to spend.
func initialMmapSize(path string, ahead int64) int {
	if ahead <= 0 || runtime.GOOS == "windows" || strconv.IntSize < 64 {
		return 0
	}
	var size int64
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	return int(size + ahead)
}

// Open opens (or creates) the store file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = time.Second
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = time.Second
	}
	if opts.ProbeBytes <= 0 {
		opts.ProbeBytes = 1 << 20
	}
	if opts.JournalBytes == 0 {
		opts.JournalBytes = 4 << 20
	}
	if opts.CheckpointEvents <= 0 {
		opts.CheckpointEvents = 256
	}
	if opts.MappedBytes == 0 {
		opts.MappedBytes = 128 << 20
	}
	if opts.MappedCheckInterval <= 0 {
		opts.MappedCheckInterval = 25 * time.Millisecond
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.OpenTimeout, InitialMmapSize: initialMmapSize(path, opts.MapAhead)})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: locked by another process: %w", path, err)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s := &Store{
		db:               db,
		maxBatch:         opts.MaxBatch,
		ops:              make(chan *op),
		closing:          make(chan struct{}),
		stopped:          make(chan struct{}),
		trimStopped:      make(chan struct{}),
		ckptDone:         make(chan error, 1),
		checkpointEvents: opts.CheckpointEvents,
	}
	var (
		rev     uint64
		storeID []byte
	)
	err = db.Update(func(tx *bolt.Tx) error {
		if err := initSchemaTx(tx); err != nil {
			return err
		}
		rev = tx.Bucket(bucketRevisions).Sequence()
		s.chain = chainOf(tx)
		storeID = bytes.Clone(tx.Bucket(bucketMeta).Get(keyStoreID))
		return nil
	})
	if err == nil {
		err = s.recoverJournal(path+JournalSuffix, storeID)
	}
	if err == nil && opts.JournalBytes > 0 {
		s.journal, err = openJournal(path+JournalSuffix, opts.JournalBytes, storeID)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.rev.Publish(int64(rev))
	s.writable.Store(true)
	s.probeInterval, s.probeBytes, s.observer = opts.ProbeInterval, opts.ProbeBytes, opts.Observer
	go s.commitLoop()
	if opts.MappedBytes >= 0 && canBoundMapped {
		go s.trimLoop(opts.MappedBytes, opts.MappedCheckInterval)
	} else {
		close(s.trimStopped)
	}
	return s, nil
}

// recoverJournal checkpoints the events a crash left in the journal.
func (s *Store) recoverJournal(path string, storeID []byte) error {
	recs, lost, err := readJournal(path, storeID, s.chain.seq)
	if err != nil {
		return err
	}
	if s.pending, err = after(recs, lost, s.chain.seq, s.chain.head); err != nil {
		return err
	}
	return s.checkpoint()
}

// FileSize is the size of the data file in bytes (it never shrinks).
func (s *Store) FileSize() int64 {
	var n int64
	_ = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n
}

// DB exposes the underlying bbolt handle for offline tools (backup, checks).
func (s *Store) DB() *bolt.DB { return s.db }

// Close stops the commit loop, failing operations still queued, and closes
// the file.
func (s *Store) Close() error {
	var err error
	s.closeMu.Do(func() {
		close(s.closing)
		<-s.stopped
		<-s.trimStopped
		// The loop has stopped, so its state is this goroutine's now.
		err = s.checkpoint()
		if s.journal != nil {
			err = errors.Join(err, s.journal.Close())
		}
		err = errors.Join(err, s.db.Close())
	})
	return err
}

// view runs fn in a read transaction, mapping storage failures to
// store.ErrUnavailable.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	err := s.db.View(fn)
	if err != nil && !store.IsRefusal(err) {
		return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
	}
	return err
}
