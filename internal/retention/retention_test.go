package retention_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/retention"
)

// seed writes n rows and then sets their state with set (SQL after SET,
// applied to the new rows), returning their ids.
func seed(t *testing.T, pool *pgxpool.Pool, n int, set string) []int64 {
	t.Helper()
	ctx := t.Context()
	rows, err := pool.Query(ctx, `
		INSERT INTO outbox (app_id, event_type, data)
		SELECT 'acme', 'render.completed', jsonb_build_object('entity_id', 'r' || i, 'asset_id', 'a' || i)
		  FROM generate_series(1, $1) AS i
		RETURNING id`, n)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if set != "" {
		if _, err := pool.Exec(ctx, "UPDATE outbox SET "+set+" WHERE id = ANY($1)", ids); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func remaining(t *testing.T, pool *pgxpool.Pool) []int64 {
	t.Helper()
	rows, err := pool.Query(t.Context(), "SELECT id FROM outbox ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

const (
	oldDelivered = "enqueued_at = now() - interval '10 days', delivered_at = now() - interval '8 days', svix_message_id = 'msg_x'"
	newDelivered = "enqueued_at = now() - interval '1 hour', delivered_at = now() - interval '1 hour', svix_message_id = 'msg_y'"
	oldFailed    = "enqueued_at = now() - interval '10 days', failed_at = now() - interval '9 days', last_error = '422 validation'"
	newFailed    = "enqueued_at = now() - interval '1 hour', failed_at = now() - interval '1 hour', last_error = '422 validation'"
	inFlight     = "enqueued_at = now() - interval '10 days'"
)

func TestPrune(t *testing.T) {
	t.Parallel()

	type bundle struct {
		pool               *pgxpool.Pool
		oldDelivered, kept []int64
		oldFailed          []int64
		weekAgo            time.Time
	}
	setup := func(t *testing.T) bundle {
		t.Helper()
		pool := pgtest.Pool(t)
		b := bundle{pool: pool, weekAgo: time.Now().Add(-7 * 24 * time.Hour)}
		b.oldDelivered = seed(t, pool, 10, oldDelivered)
		b.kept = append(b.kept, seed(t, pool, 2, newDelivered)...)
		b.oldFailed = seed(t, pool, 3, oldFailed)
		b.kept = append(b.kept, seed(t, pool, 2, newFailed)...)
		b.kept = append(b.kept, seed(t, pool, 2, inFlight)...)
		b.kept = append(b.kept, seed(t, pool, 2, "")...) // pending, written now
		return b
	}

	t.Run("DeliveredOnlyInBatches", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		opts := retention.Options{DeliveredBefore: b.weekAgo, Batch: 3}
		counted, err := retention.Count(t.Context(), b.pool, opts)
		if err != nil {
			t.Fatal(err)
		}
		if counted != (retention.Result{Delivered: 10}) {
			t.Errorf("Count = %+v, want 10 delivered, 0 failed", counted)
		}

		var batches []int64
		opts.OnBatch = func(kind string, n int64) {
			if kind != "delivered" {
				t.Errorf("batch of kind %q, want delivered", kind)
			}
			batches = append(batches, n)
		}
		res, err := retention.Prune(t.Context(), b.pool, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res != (retention.Result{Delivered: 10}) {
			t.Errorf("Prune = %+v, want 10 delivered", res)
		}
		if !slices.Equal(batches, []int64{3, 3, 3, 1}) {
			t.Errorf("batches %v, want [3 3 3 1] (at most Batch rows per transaction)", batches)
		}
		want := append(slices.Clone(b.kept), b.oldFailed...)
		slices.Sort(want)
		if got := remaining(t, b.pool); !slices.Equal(got, want) {
			t.Errorf("rows left %v, want %v: failed, undelivered and recent rows kept", got, want)
		}

		// Nothing left to do: a second run deletes nothing.
		res, err = retention.Prune(t.Context(), b.pool, opts)
		if err != nil || res != (retention.Result{}) {
			t.Errorf("second Prune = %+v, %v; want nothing deleted", res, err)
		}
	})

	t.Run("FailedOnlyWhenAsked", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		opts := retention.Options{FailedBefore: b.weekAgo}
		counted, err := retention.Count(t.Context(), b.pool, opts)
		if err != nil {
			t.Fatal(err)
		}
		if counted != (retention.Result{Failed: 3}) {
			t.Errorf("Count = %+v, want 3 failed", counted)
		}
		res, err := retention.Prune(t.Context(), b.pool, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res != (retention.Result{Failed: 3}) {
			t.Errorf("Prune = %+v, want 3 failed", res)
		}
		want := append(slices.Clone(b.kept), b.oldDelivered...)
		slices.Sort(want)
		if got := remaining(t, b.pool); !slices.Equal(got, want) {
			t.Errorf("rows left %v, want %v", got, want)
		}
	})

	t.Run("LockedRowsSkipped", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		// A replay holds one old delivered row: pruning goes around it.
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
		if _, err := tx.Exec(ctx, "SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", b.oldDelivered[0]); err != nil {
			t.Fatal(err)
		}
		res, err := retention.Prune(ctx, b.pool, retention.Options{DeliveredBefore: b.weekAgo, Batch: 4})
		if err != nil {
			t.Fatal(err)
		}
		if res.Delivered != 9 {
			t.Errorf("deleted %d, want 9 (the locked row skipped, without waiting)", res.Delivered)
		}
	})

	t.Run("NothingSelected", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		res, err := retention.Prune(t.Context(), b.pool, retention.Options{})
		if err != nil || res != (retention.Result{}) {
			t.Errorf("Prune with no times = %+v, %v; want nothing", res, err)
		}
		if n := len(remaining(t, b.pool)); n != 21 {
			t.Errorf("%d rows left, want all 21", n)
		}
	})
}
