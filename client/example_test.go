package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/careplan/careplan/client"
	"github.com/careplan/careplan/internal/fixture"
	"github.com/careplan/careplan/internal/testserver"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// These examples run against a real careplan server that each one starts
// on a loopback port (testserver.StartExample). In your code, dial your
// server's address with a token from your identity provider instead.

func ExampleDial() {
	srv, stop := testserver.StartExample()
	defer stop()
	ctx := context.Background()

	c, err := client.Dial(ctx, srv.Addr, client.WithToken(srv.Token(testserver.Council)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.Get(ctx, "9434765919")
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("no care plan yet")
	case err != nil:
		log.Fatal(err)
	}
	// Output: no care plan yet
}

func ExampleClient_Modify() {
	srv, stop := testserver.StartExample()
	defer stop()
	ctx := context.Background()
	nhs := fixture.NHSNumber(1)
	trust, _ := client.Dial(ctx, srv.Addr, client.WithToken(srv.Token(testserver.TrustUser)))
	defer trust.Close()
	if _, err := trust.Create(ctx, fixture.TrustPlan(nhs), "create-1"); err != nil {
		log.Fatal(err)
	}

	// Read-modify-write with the etag; Modify retries when another
	// organisation wrote in between, so fn changes only the plan it is given.
	stored, err := trust.Modify(ctx, nhs, func(p *careplanv1.CarePlan) error {
		p.NextReviewDate = "2027-01-15"
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("version", stored.GetVersion(), "review", stored.GetNextReviewDate())
	// Output: version 2 review 2027-01-15
}

func ExampleClient_Watch() {
	srv, stop := testserver.StartExample()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nhs := fixture.NHSNumber(2)
	trust, _ := client.Dial(ctx, srv.Addr, client.WithToken(srv.Token(testserver.TrustUser)))
	defer trust.Close()
	if _, err := trust.Create(ctx, fixture.TrustPlan(nhs), ""); err != nil {
		log.Fatal(err)
	}

	// The council follows changes to its plans. Save the revision of each
	// event you have processed and pass it as fromRevision after a restart:
	// Watch resumes by itself after disconnects, with no gaps or repeats.
	council, _ := client.Dial(ctx, srv.Addr, client.WithToken(srv.Token(testserver.Council)))
	defer council.Close()
	_, err := council.Watch(ctx, 0, func(ev *careplanv1.CarePlanEvent) error {
		fmt.Println(ev.GetRevision(), ev.GetType(), "by", ev.GetActor().GetOrgCode())
		cancel() // one event is enough for the example
		return nil
	})
	fmt.Println(errors.Is(err, context.Canceled))
	// Output:
	// 1 TYPE_CREATED by RXA
	// true
}
