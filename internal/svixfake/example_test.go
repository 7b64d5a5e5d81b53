package svixfake_test

import (
	"context"
	"fmt"
	"net/url"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// The fake speaks to the real Svix client; faults change while it serves.
func Example() {
	srv, err := svixfake.New(svixfake.Config{})
	if err != nil {
		panic(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		panic(err)
	}
	defer srv.Close()

	u, _ := url.Parse(srv.URL())
	client, err := svix.New(svixfake.DefaultToken, &svix.SvixOptions{
		ServerUrl:     u,
		RetrySchedule: &[]time.Duration{}, // let the caller own retries
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	app := "tenant-42"
	key, eventID := "outbox-1", "outbox-1"
	in := models.MessageIn{
		EventType:   "asset.ready",
		EventId:     &eventID,
		Payload:     map[string]any{"asset_id": "a-1"},
		Application: &models.ApplicationIn{Name: "Tenant 42", Uid: &app},
	}
	opts := &svix.MessageCreateOptions{IdempotencyKey: &key}

	srv.Throttle(1, 2*time.Second)
	_, err = client.Message.Create(ctx, app, in, opts)
	if se, ok := err.(*svix.Error); ok {
		fmt.Println("first try:", se.Status())
	}

	out, err := client.Message.Create(ctx, app, in, opts)
	if err != nil {
		panic(err)
	}
	stored, _ := srv.MessageByEventID(app, eventID)
	fmt.Println("retry accepted:", out.Id == stored.ID)
	fmt.Println("payload as received:", string(stored.Payload))
	// Output:
	// first try: 429
	// retry accepted: true
	// payload as received: {"asset_id":"a-1"}
}
