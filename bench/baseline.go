//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// bareCommand is the hidden sub-command that runs the bare baseline server:
// the bench re-executes its own binary with it, so the baseline is a process
// of its own exactly like careplan-server, and both are measured the same
// way (start-up to SERVING, RSS, SIGTERM to exit 0).
const bareCommand = "bare-server"

// bareServer is grpc-go with nothing added: no interceptors, no auth, no
// store. It answers GetCarePlan and ListCarePlans with the messages the
// careplan server returned for a sample request, so the same bytes travel.
type bareServer struct {
	careplanv1.UnimplementedCarePlanServiceServer
	plan *careplanv1.CarePlan
	page *careplanv1.ListCarePlansResponse
}

func (b *bareServer) GetCarePlan(context.Context, *careplanv1.GetCarePlanRequest) (*careplanv1.CarePlan, error) {
	return b.plan, nil
}

func (b *bareServer) ListCarePlans(context.Context, *careplanv1.ListCarePlansRequest) (*careplanv1.ListCarePlansResponse, error) {
	return b.page, nil
}

// runBare is the bare server's main: -addr, -plan FILE and -page FILE (the
// marshalled responses). It exits 0 after SIGTERM, like careplan-server.
func runBare(args []string) error {
	fs := flag.NewFlagSet(bareCommand, flag.ContinueOnError)
	addr := fs.String("addr", "", "loopback listen address")
	planFile := fs.String("plan", "", "marshalled CarePlan to return from GetCarePlan")
	pageFile := fs.String("page", "", "marshalled ListCarePlansResponse to return from ListCarePlans")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b := &bareServer{plan: &careplanv1.CarePlan{}, page: &careplanv1.ListCarePlansResponse{}}
	for file, m := range map[string]proto.Message{*planFile: b.plan, *pageFile: b.page} {
		raw, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if err := proto.Unmarshal(raw, m); err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	if !lis.Addr().(*net.TCPAddr).IP.IsLoopback() {
		return errors.New("bare server listens on loopback only")
	}
	gs := grpc.NewServer()
	careplanv1.RegisterCarePlanServiceServer(gs, b)
	hs := health.NewServer()
	hs.SetServingStatus(healthService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	gs.GracefulStop()
	return nil
}

// writeBareFiles stores the sample responses for the bare server to load.
func writeBareFiles(dir string, plan *careplanv1.CarePlan, page *careplanv1.ListCarePlansResponse) (planFile, pageFile string, err error) {
	planFile, pageFile = dir+"/bare-plan.pb", dir+"/bare-page.pb"
	for file, m := range map[string]proto.Message{planFile: plan, pageFile: page} {
		raw, err := proto.Marshal(m)
		if err != nil {
			return "", "", err
		}
		if err := os.WriteFile(file, raw, 0o600); err != nil {
			return "", "", err
		}
	}
	return planFile, pageFile, nil
}

// rawBolt is the write baseline: a bbolt file of its own with default
// options (so every commit fsyncs), one bucket, random keys, and values the
// size of a stored plan version. It is what the careplan store would cost
// if a write were one Put and nothing else.
type rawBolt struct {
	db    *bolt.DB
	value []byte
}

var rawBucket = []byte("plans")

func openRawBolt(path string, valueBytes int) (*rawBolt, error) {
	// Timeout only bounds the file-lock wait; it changes nothing about
	// syncing. Everything else is bbolt's default.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(rawBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, err
	}
	// Random bytes, so the value is exactly as big on disk as in memory.
	// One slice serves every Put: bbolt only reads it.
	value := make([]byte, valueBytes)
	_, _ = rand.Read(value)
	return &rawBolt{db: db, value: value}, nil
}

// batchPut is one Put through db.Batch, which coalesces concurrent callers
// into one transaction and one fsync (it waits up to MaxBatchDelay, 10ms, to
// fill a batch).
func (r *rawBolt) batchPut(context.Context, int, int64) error {
	key := randomKey()
	return r.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(rawBucket).Put(key, r.value) })
}

// updatePut is one Put in its own transaction: the single-caller floor, one
// commit and one fsync, with none of Batch's waiting.
func (r *rawBolt) updatePut(context.Context, int, int64) error {
	key := randomKey()
	return r.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(rawBucket).Put(key, r.value) })
}

func (r *rawBolt) Close() error { return r.db.Close() }

func randomKey() []byte {
	k := make([]byte, 16)
	_, _ = rand.Read(k)
	return k
}
