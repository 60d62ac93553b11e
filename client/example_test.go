package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"strconv"

	"github.com/careplan/careplan/client"
	careplanv1 "github.com/careplan/careplan/proto/careplan/v1"
)

// These examples talk to a server at 127.0.0.1:50051 (`careplan-server
// --dev`) with a token in $CAREPLAN_TOKEN. They are compiled but not run.

func ExampleDial() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "127.0.0.1:50051", client.WithToken(os.Getenv("CAREPLAN_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	plan, err := c.Get(ctx, "9434765919")
	switch {
	case errors.Is(err, client.ErrNotFound):
		fmt.Println("no care plan yet")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println(plan.GetCoordinator().GetName(), plan.GetEtag())
	}
}

func ExampleClient_Modify() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "127.0.0.1:50051", client.WithToken(os.Getenv("CAREPLAN_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// fn may run more than once if another organisation writes in between,
	// so it changes the plan it is given and nothing else.
	stored, err := c.Modify(ctx, "9434765919", func(p *careplanv1.CarePlan) error {
		p.NextReviewDate = "2027-01-15"
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("now version", stored.GetVersion())
}

func ExampleClient_Watch() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "127.0.0.1:50051", client.WithToken(os.Getenv("CAREPLAN_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Resume from the revision saved last time; Watch reconnects by itself
	// after a restart, so it returns only when something is really wrong.
	const stateFile = "careplan-watch.rev"
	var from int64
	if b, err := os.ReadFile(stateFile); err == nil {
		from, _ = strconv.ParseInt(string(b), 10, 64)
	}
	last, err := c.Watch(ctx, from, func(ev *careplanv1.CarePlanEvent) error {
		fmt.Println(ev.GetRevision(), ev.GetType(), ev.GetNhsNumber())
		// Update the case-management record here, then remember the event.
		return os.WriteFile(stateFile, []byte(strconv.FormatInt(ev.GetRevision(), 10)), 0o600)
	})
	log.Fatalf("watch stopped after revision %d: %v", last, err)
}
