package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/outbox"
)

// A state change and its event commit together: the relay delivers the
// event once the transaction commits.
func Example() {
	ctx := context.Background()
	pool, cleanup := exampleDB(ctx)
	defer cleanup()

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit

	if _, err := tx.Exec(ctx, `UPDATE renders SET state = 'completed' WHERE id = $1`, "render_1"); err != nil {
		log.Fatal(err)
	}
	if _, err := outbox.Emit(ctx, tx, outbox.RenderCompleted("acme", "render_1", "asset_1")); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}

	var state string
	var events int
	_ = pool.QueryRow(ctx, `SELECT state FROM renders WHERE id = 'render_1'`).Scan(&state)
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE event_type = 'render.completed'`).Scan(&events)
	fmt.Println("render:", state, "| events waiting for the relay:", events)
	// Output: render: completed | events waiting for the relay: 1
}

// A rolled-back transaction emits nothing.
func Example_rollback() {
	ctx := context.Background()
	pool, cleanup := exampleDB(ctx)
	defer cleanup()

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE renders SET state = 'failed' WHERE id = $1`, "render_1"); err != nil {
		log.Fatal(err)
	}
	if _, err := outbox.Emit(ctx, tx, outbox.RenderFailed("acme", "render_1", "asset_1")); err != nil {
		log.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil { // the render could not be saved after all
		log.Fatal(err)
	}

	var events int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&events)
	fmt.Println("events:", events)
	// Output: events: 0
}

// Several events in one statement, ids in order.
func ExampleEmitBatch() {
	ctx := context.Background()
	pool, cleanup := exampleDB(ctx)
	defer cleanup()

	ids, err := outbox.EmitBatch(ctx, pool, []outbox.Event{
		outbox.AssetPendingPayment("acme", "asset_1"),
		outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(ids), ids[0] < ids[1])
	// Output: 2 true
}

// A bad event is refused with the field and the rule, before and by the
// database alike.
func ExampleValidate() {
	err := outbox.Validate(outbox.AssetReady("acme", "asset_1", "done"))
	var verr *outbox.ValidationError
	if errors.As(err, &verr) {
		fmt.Println(verr.Rule)
		fmt.Println(verr.Message)
	}
	// Output:
	// data_previous_state
	// outbox.data.previous_state must be one of processing, pending_payment for asset.ready
}

// exampleDB migrates a schema of its own on DATABASE_URL (as `make test`
// sets it), with a small renders table standing for a product's state.
func exampleDB(ctx context.Context) (*pgxpool.Pool, func()) {
	pool, cleanup := pgtest.ForExample(ctx)
	if _, err := pool.Exec(ctx, `CREATE TABLE renders (id text PRIMARY KEY, state text NOT NULL);
		INSERT INTO renders VALUES ('render_1', 'running')`); err != nil {
		log.Fatal(err)
	}
	return pool, cleanup
}
