package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/testkit"
)

// TestRecordCountsOnlyAppliedOutcomes races two runs of one batch job
// recording the same row (a run rescued by River while the first still
// records): the second waits for the first, then applies nothing, so its
// outcome is neither written twice nor counted.
func TestRecordCountsOnlyAppliedOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := pgtest.Migrated(t)
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO outbox (app_id, event_type, data)
		VALUES ('acme', 'cut.completed', '{"entity_id": "c1", "asset_id": "a1"}') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	const jobID = 7
	if _, err := pool.Exec(ctx, `UPDATE outbox SET enqueued_at = now(), job_id = $2 WHERE id = $1`, id, jobID); err != nil {
		t.Fatal(err)
	}
	lo, hi := openSpan().bounds()
	record := func(tx pgx.Tx, msgID string) int {
		rows, err := tx.Query(ctx, recordSQL, []int64{id}, []string{string(rowDelivered)}, []string{msgID}, []string{""},
			[]bool{false}, []bool{true}, []time.Time{time.Now()}, []int64{0}, jobID, lo, hi)
		if err != nil {
			t.Error(err)
			return -1
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Error(err)
		}
		return n
	}

	first, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx) //nolint:errcheck
	if n := record(first, "msg_first"); n != 1 {
		t.Fatalf("first run applied %d outcomes, want 1", n)
	}

	second := make(chan int, 1)
	go func() {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Error(err)
			second <- -1
			return
		}
		defer tx.Rollback(ctx) //nolint:errcheck
		n := record(tx, "msg_second")
		if err := tx.Commit(ctx); err != nil {
			t.Error(err)
		}
		second <- n
	}()
	// The second run waits on the row the first is recording.
	testkit.WaitFor(t, 10*time.Second, "the second run to wait for the first", func() bool {
		var waiting bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE outbox AS o%' AND datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting
	})
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if n := <-second; n != 0 {
		t.Errorf("second run applied %d outcomes after the first recorded the row, want 0", n)
	}
	var msgID string
	if err := pool.QueryRow(ctx, `SELECT svix_message_id FROM outbox WHERE id = $1`, id).Scan(&msgID); err != nil {
		t.Fatal(err)
	}
	if msgID != "msg_first" {
		t.Errorf("svix_message_id = %s, want the first run's", msgID)
	}
}
