package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/careplan/careplan/auth"
	"github.com/careplan/careplan/internal/fixture"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

func TestUnauthenticated(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(20)
	e.create(trustUser, fixture.TrustPlan(nhs))
	now := time.Now()
	good := auth.Claims{
		Issuer: testIssuer, Audience: []string{testAudience}, Subject: "nurse-1", Org: "RXA", OrgType: "nhs",
		Roles: rw, IssuedAt: now, ExpiresAt: now.Add(time.Hour),
	}
	mint := func(s *auth.Signer, change func(*auth.Claims)) string {
		c := good
		change(&c)
		tok, err := s.Mint(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	jwks, _ := e.Signer.JWKS()
	forge := func(method jwt.SigningMethod, key any) string {
		tok := jwt.NewWithClaims(method, jwt.MapClaims{
			"iss": testIssuer, "aud": testAudience, "sub": "nurse-1", "org": "RXA", "org_type": "nhs",
			"roles": rw, "exp": now.Add(time.Hour).Unix(),
		})
		tok.Header["kid"] = e.Signer.KID()
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	otherKid, _ := auth.NewSigner("another-key")
	sameKid, _ := auth.NewSigner(e.Signer.KID())
	valid := mint(e.Signer, func(*auth.Claims) {})
	parts := strings.Split(valid, ".")
	sig := []byte(parts[2])
	sig[5] ^= 1
	tampered := parts[0] + "." + parts[1] + "." + string(sig)

	tests := []struct {
		name  string
		token string // "" sends no authorization metadata
	}{
		{"no token", ""},
		{"alg none", forge(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType)},
		{"HS256 keyed with the JWKS text", forge(jwt.SigningMethodHS256, jwks)},
		{"unknown kid", mint(otherKid, func(*auth.Claims) {})},
		{"key not in the JWKS", mint(sameKid, func(*auth.Claims) {})},
		{"tampered signature", tampered},
		{"expired", mint(e.Signer, func(c *auth.Claims) { c.ExpiresAt = now.Add(-2 * time.Minute) })},
		{"not yet valid", mint(e.Signer, func(c *auth.Claims) { c.NotBefore = now.Add(2 * time.Minute) })},
		{"wrong iss", mint(e.Signer, func(c *auth.Claims) { c.Issuer = "https://evil.test" })},
		{"wrong aud", mint(e.Signer, func(c *auth.Claims) { c.Audience = []string{"other-service"} })},
		{"missing org", mint(e.Signer, func(c *auth.Claims) { c.Org = "" })},
		{"missing org_type", mint(e.Signer, func(c *auth.Claims) { c.OrgType = "" })},
		{"over 8 KiB", mint(e.Signer, func(c *auth.Claims) { c.Subject = strings.Repeat("s", 8<<10) })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tc.token != "" {
				ctx = withToken(tc.token)
			}
			_, err := e.plans.GetCarePlan(ctx, &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
			info, _ := wantCode(t, err, codes.Unauthenticated)
			if info.GetReason() == "" {
				t.Fatal("no ErrorInfo reason")
			}
			_, err = e.plans.UpdateCarePlan(ctx, &careplanv1.UpdateCarePlanRequest{CarePlan: fixture.TrustPlan(nhs)})
			wantCode(t, err, codes.Unauthenticated)
		})
	}
	if e.versionCount(nhs) != 1 {
		t.Fatal("an unauthenticated call wrote")
	}
}

func TestMissingRole(t *testing.T) {
	e := newEnv(t)
	nhs := fixture.NHSNumber(21)
	v1 := e.create(trustUser, fixture.TrustPlan(nhs))
	noRoles := caller{Subject: "nobody", Org: "RXA", OrgType: "nhs", Roles: nil}
	_, err := e.plans.GetCarePlan(e.as(noRoles), &careplanv1.GetCarePlanRequest{NhsNumber: nhs})
	wantCode(t, err, codes.PermissionDenied)
	_, err = e.plans.ListCarePlans(e.as(noRoles), &careplanv1.ListCarePlansRequest{})
	wantCode(t, err, codes.PermissionDenied)
	change := &careplanv1.CarePlan{NhsNumber: nhs, Etag: v1.GetEtag(), WhatMatters: "read-only caller"}
	_, err = e.plans.UpdateCarePlan(e.as(readOnly), &careplanv1.UpdateCarePlanRequest{CarePlan: change})
	wantCode(t, err, codes.PermissionDenied)
	_, err = e.plans.CreateCarePlan(e.as(readOnly), &careplanv1.CreateCarePlanRequest{CarePlan: fixture.TrustPlan(fixture.NHSNumber(22))})
	wantCode(t, err, codes.PermissionDenied)
	if e.versionCount(nhs) != 1 {
		t.Fatal("a caller without the write role wrote")
	}
}

func TestHealthAndReflectionNeedNoToken(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(e.Conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(e.Conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	r, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection without a token: %v", err)
	}
	var names []string
	for _, s := range r.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !strings.Contains(strings.Join(names, ","), "careplan.v1.CarePlanService") {
		t.Fatalf("reflection lists %v", names)
	}
}
