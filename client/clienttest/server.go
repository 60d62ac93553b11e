// Package clienttest runs an in-memory CarePlanService on a real loopback
// listener, so code built on package client (and the careplan CLI) can be
// tested over the wire without the real server, its store or its keys. The
// fake keeps the parts of the contract a client depends on: versions and
// etags, ETAG_MISMATCH with current_etag, the AIP-193 error details, and
// paging. It does no authorisation and no validation beyond the etag.
package clienttest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// Call is one RPC the fake received.
type Call struct {
	Method   string // full method name, e.g. /careplan.v1.CarePlanService/GetCarePlan
	Metadata metadata.MD
	Request  proto.Message
}

// Server is the fake. Its methods are safe to call while RPCs are in flight.
type Server struct {
	careplanv1.UnimplementedCarePlanServiceServer

	// Addr is the loopback address the fake listens on.
	Addr string

	mu               sync.Mutex
	versions         map[string][]*careplanv1.CarePlan // oldest first
	calls            []Call
	pageSize         int
	concurrentWrites int
}

// Start serves a new fake on 127.0.0.1:0 until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: lis.Addr().String(), versions: map[string][]*careplanv1.CarePlan{}}
	gs := grpc.NewServer(grpc.UnaryInterceptor(s.record))
	careplanv1.RegisterCarePlanServiceServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return s
}

// Put stores plan as a new version, as if some other client had written it,
// and returns the stored copy with its version and etag.
func (s *Server) Put(plan *careplanv1.CarePlan) *careplanv1.CarePlan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.putLocked(plan)
}

// Calls returns the RPCs received so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// SetPageSize caps the versions per ListCarePlanVersions page, so a test can
// force several pages.
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// ConcurrentWrites makes the next n UpdateCarePlan calls lose a race: just
// before each lands, another writer stores a new version, so the call fails
// with ETAG_MISMATCH.
func (s *Server) ConcurrentWrites(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.concurrentWrites = n
}

// Status builds an error shaped as the real server's (AIP-193): an ErrorInfo
// in domain "careplan" with reason and metadata, plus a BadRequest when
// fields are given.
func Status(c codes.Code, reason, msg string, md map[string]string, fields ...string) error {
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: "careplan", Metadata: md}}
	if len(fields) > 0 {
		br := &errdetails.BadRequest{}
		for _, f := range fields {
			br.FieldViolations = append(br.FieldViolations, &errdetails.BadRequest_FieldViolation{Field: f, Description: "invalid"})
		}
		details = append(details, br)
	}
	st, err := status.New(c, msg).WithDetails(details...)
	if err != nil {
		panic(err) // only for details that cannot be marshalled
	}
	return st.Err()
}

func (s *Server) record(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	msg, _ := req.(proto.Message)
	s.mu.Lock()
	s.calls = append(s.calls, Call{Method: info.FullMethod, Metadata: md.Copy(), Request: proto.Clone(msg)})
	s.mu.Unlock()
	return handler(ctx, req)
}

func notFound() error {
	return Status(codes.NotFound, "PLAN_NOT_FOUND", "care plan not found", nil)
}

// putLocked stores a copy of plan as the next version.
func (s *Server) putLocked(plan *careplanv1.CarePlan) *careplanv1.CarePlan {
	stored := proto.Clone(plan).(*careplanv1.CarePlan)
	stored.Version = int64(len(s.versions[stored.GetNhsNumber()]) + 1)
	stored.Etag = fmt.Sprintf(`W/"%d"`, stored.Version)
	s.versions[stored.GetNhsNumber()] = append(s.versions[stored.GetNhsNumber()], stored)
	return proto.Clone(stored).(*careplanv1.CarePlan)
}

func (s *Server) currentLocked(nhs string) *careplanv1.CarePlan {
	vs := s.versions[nhs]
	if len(vs) == 0 {
		return nil
	}
	return vs[len(vs)-1]
}

// GetCarePlan implements careplanv1.CarePlanServiceServer.
func (s *Server) GetCarePlan(_ context.Context, req *careplanv1.GetCarePlanRequest) (*careplanv1.CarePlan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.currentLocked(req.GetNhsNumber())
	if cur == nil {
		return nil, notFound()
	}
	return proto.Clone(cur).(*careplanv1.CarePlan), nil
}

// CreateCarePlan implements careplanv1.CarePlanServiceServer.
func (s *Server) CreateCarePlan(_ context.Context, req *careplanv1.CreateCarePlanRequest) (*careplanv1.CarePlan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nhs := req.GetCarePlan().GetNhsNumber()
	if nhs == "" {
		return nil, Status(codes.InvalidArgument, "INVALID_ARGUMENT", "invalid care plan", nil, "care_plan.nhs_number")
	}
	if s.currentLocked(nhs) != nil {
		return nil, Status(codes.AlreadyExists, "PLAN_ALREADY_EXISTS", "care plan already exists", nil)
	}
	return s.putLocked(req.GetCarePlan()), nil
}

// UpdateCarePlan implements careplanv1.CarePlanServiceServer. It replaces the
// whole plan whatever the mask says; tests read the mask from Calls.
func (s *Server) UpdateCarePlan(_ context.Context, req *careplanv1.UpdateCarePlanRequest) (*careplanv1.CarePlan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	plan := req.GetCarePlan()
	if plan.GetEtag() == "" {
		return nil, Status(codes.InvalidArgument, "INVALID_ARGUMENT", "etag is required", nil, "care_plan.etag")
	}
	cur := s.currentLocked(plan.GetNhsNumber())
	if cur == nil {
		return nil, notFound()
	}
	if s.concurrentWrites > 0 {
		s.concurrentWrites--
		cur = s.putLocked(cur)
	}
	if plan.GetEtag() != cur.GetEtag() {
		return nil, Status(codes.Aborted, "ETAG_MISMATCH", "etag does not match the current version",
			map[string]string{"current_etag": cur.GetEtag()})
	}
	return s.putLocked(plan), nil
}

// ListCarePlanVersions implements careplanv1.CarePlanServiceServer. Page
// tokens are the index of the next version.
func (s *Server) ListCarePlanVersions(_ context.Context, req *careplanv1.ListCarePlanVersionsRequest) (*careplanv1.ListCarePlanVersionsResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := s.versions[req.GetNhsNumber()]
	if len(vs) == 0 {
		return nil, notFound()
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n >= len(vs) {
			return nil, Status(codes.InvalidArgument, "INVALID_ARGUMENT", "bad page token", nil, "page_token")
		}
		start = n
	}
	size := int(req.GetPageSize())
	if size <= 0 || size > 100 {
		size = 100
	}
	if s.pageSize > 0 {
		size = min(size, s.pageSize)
	}
	end := min(start+size, len(vs))
	resp := &careplanv1.ListCarePlanVersionsResponse{}
	for _, v := range vs[start:end] {
		resp.Versions = append(resp.Versions, proto.Clone(v).(*careplanv1.CarePlan))
	}
	if end < len(vs) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}
