package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// InsertRow writes one outbox row of eventType for app with data (a JSON
// object the type accepts) and returns its id. set, when not empty, then
// puts the row in a state by setting relay-owned columns: the SQL after
// SET, written by the test ("enqueued_at = now(), failed_at = now()").
func InsertRow(tb testing.TB, pool *pgxpool.Pool, app, eventType, data, set string) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ($1, $2, $3) RETURNING id`,
		app, eventType, data).Scan(&id); err != nil {
		tb.Fatalf("testkit: insert %s row for %s: %v", eventType, app, err)
	}
	if set != "" {
		if _, err := pool.Exec(ctx, "UPDATE outbox SET "+set+" WHERE id = $1", id); err != nil {
			tb.Fatalf("testkit: set row %d: %s: %v", id, set, err)
		}
	}
	return id
}
