// Package metrics exposes careplan's Prometheus metrics: per-method call
// counts and latencies (from go-grpc-middleware's prometheus provider) and
// the store's commit batch sizes, disk write and fsync latency and file
// size. Nothing here carries patient data: labels are methods and codes.
package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry holds every metric of one server process.
type Registry struct {
	*prometheus.Registry
	// GRPC provides the interceptors for the server's chains.
	GRPC *grpcprom.ServerMetrics
}

// New returns a registry with the gRPC server metrics (with latency
// histograms) and the Go process metrics.
func New() *Registry {
	reg := prometheus.NewRegistry()
	g := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}),
	))
	reg.MustRegister(g, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Registry{Registry: reg, GRPC: g}
}

// Store records the store's group commits; it implements
// store.CommitObserver.
type Store struct {
	batch     prometheus.Histogram
	disk      prometheus.Histogram
	failures  prometheus.Counter
	unmaps    prometheus.Counter
	unmapTime prometheus.Counter
}

// NewStore registers the store metrics. fileSize reports the data file's
// size when scraped; nil means the store has no data file (PostgreSQL),
// and then neither that gauge nor the unmap counters are registered.
func (r *Registry) NewStore(fileSize func() int64) *Store {
	s := &Store{
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "careplan_store_commit_batch_ops",
			Help:    "Operations that shared one transaction and one fsync (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		disk: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "careplan_store_fsync_seconds",
			Help:    "Time one commit took to make its writes durable: bbolt's page writes and fsync; on PostgreSQL, the whole transaction.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .5},
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "careplan_store_commit_failures_total",
			Help: "Commits that failed (full disk, I/O error); nothing of them was written.",
		}),
	}
	s.unmaps = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "careplan_store_unmaps_total",
		Help: "Times the data file's pages were unmapped because file-backed memory passed --max-mapped-mb.",
	})
	s.unmapTime = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "careplan_store_unmap_seconds_total",
		Help: "Time spent unmapping the data file's pages (reads map them again with minor faults).",
	})
	r.MustRegister(s.batch, s.disk, s.failures)
	if fileSize == nil {
		return s
	}
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "careplan_store_file_bytes",
		Help: "Size of the data file; it never shrinks.",
	}, func() float64 { return float64(fileSize()) })
	r.MustRegister(s.unmaps, s.unmapTime, size)
	return s
}

// ObserveCommit implements store.CommitObserver.
func (s *Store) ObserveCommit(ops int, durable time.Duration, err error) {
	if err != nil {
		s.failures.Inc()
		return
	}
	s.batch.Observe(float64(ops))
	s.disk.Observe(durable.Seconds())
}

// ObserveUnmap implements boltstore.UnmapObserver.
func (s *Store) ObserveUnmap(took time.Duration) {
	s.unmaps.Inc()
	s.unmapTime.Add(took.Seconds())
}

// Serve serves /metrics on addr until ctx ends. It returns the address it
// listens on once listening.
func (r *Registry) Serve(ctx context.Context, addr string) (string, <-chan error, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.Registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(lis)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		done <- err
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	return lis.Addr().String(), done, nil
}
