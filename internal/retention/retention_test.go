package retention_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/retention"
	"github.com/mediaplatform/relay/internal/testkit"
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
		pool                *pgxpool.Pool
		oldDelivered, kept  []int64
		oldFailed           []int64
		weekAgo             time.Time
		droppable, keptPart string
	}
	// Rows written ten days ago, in two partitions: one holds only rows
	// delivered (or failed) long ago, the other an in-flight row too.
	// Recent rows sit in the current partition.
	setup := func(t *testing.T) bundle {
		t.Helper()
		pool := pgtest.Pool(t)
		b := bundle{pool: pool, weekAgo: time.Now().Add(-7 * 24 * time.Hour)}
		// A new outbox's first partition (the unpartitioned table of a
		// migrated one) is empty, and ended in 1970: it goes first.
		res, err := retention.Prune(t.Context(), pool, retention.Options{DeliveredBefore: time.Now().Add(-30 * 24 * time.Hour)})
		if err != nil || names(res.Partitions) != "outbox_legacy" {
			t.Fatalf("drop the empty first partition: dropped %q, %v", names(res.Partitions), err)
		}
		tenDays := time.Now().Add(-10 * 24 * time.Hour)
		b.oldDelivered = seed(t, pool, 10, oldDelivered)
		b.oldFailed = seed(t, pool, 3, oldFailed)
		sequence(t, pool)
		b.droppable = testkit.MoveToPartition(t, pool, tenDays, append(slices.Clone(b.oldDelivered), b.oldFailed...)...)
		stuck := seed(t, pool, 1, inFlight)
		alsoKept := seed(t, pool, 2, oldDelivered)
		b.keptPart = testkit.MoveToPartition(t, pool, tenDays.Add(2*time.Hour), append(stuck, alsoKept...)...)
		b.kept = append(b.kept, stuck...)
		b.kept = append(b.kept, alsoKept...)
		b.kept = append(b.kept, seed(t, pool, 2, newDelivered)...)
		b.kept = append(b.kept, seed(t, pool, 2, newFailed)...)
		b.kept = append(b.kept, seed(t, pool, 2, inFlight)...)
		b.kept = append(b.kept, seed(t, pool, 2, "")...) // pending, written now
		return b
	}

	t.Run("DeliveredByPartition", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		opts := retention.Options{DeliveredBefore: b.weekAgo, Batch: 2}
		counted, err := retention.Count(ctx, b.pool, opts)
		if err != nil {
			t.Fatal(err)
		}
		if names(counted.Partitions) != b.droppable || names(counted.Kept) != b.keptPart {
			t.Errorf("Count: drop %q, keep %q; want drop %q, keep %q", names(counted.Partitions), names(counted.Kept), b.droppable, b.keptPart)
		}
		var top int64
		if err := b.pool.QueryRow(ctx, `SELECT max(commit_seq) FROM outbox WHERE id = ANY ($1)`, b.oldDelivered).Scan(&top); err != nil {
			t.Fatal(err)
		}

		res, err := retention.Prune(ctx, b.pool, opts)
		if err != nil {
			t.Fatal(err)
		}
		if names(res.Partitions) != b.droppable || names(res.Kept) != b.keptPart || res.Moved != 3 {
			t.Errorf("Prune: dropped %q, kept %q, moved %d; want dropped %q, kept %q, 3 failed rows moved",
				names(res.Partitions), names(res.Kept), res.Moved, b.droppable, b.keptPart)
		}
		if len(res.Kept) == 1 && res.Kept[0].Blocker != retention.BlockerUndelivered {
			t.Errorf("kept partition's blocker %q, want %q", res.Kept[0].Blocker, retention.BlockerUndelivered)
		}
		want := append(slices.Clone(b.kept), b.oldFailed...)
		slices.Sort(want)
		if got := remaining(t, b.pool); !slices.Equal(got, want) {
			t.Errorf("rows left %v, want %v: failed, undelivered and recent rows kept", got, want)
		}
		// The failed rows moved keep every column but the partition key.
		var failedOld int
		if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE id = ANY ($1)
			AND failed_at < now() - interval '8 days' AND commit_seq IS NOT NULL AND partition_at >= now() - interval '1 day'`,
			b.oldFailed).Scan(&failedOld); err != nil || failedOld != 3 {
			t.Errorf("moved failed rows as they were: %d of 3 (%v)", failedOld, err)
		}
		// The live stream's cursor sees the history dropped.
		var pruned int64
		if err := b.pool.QueryRow(ctx, `SELECT pruned_through FROM outbox_live`).Scan(&pruned); err != nil || pruned < top {
			t.Errorf("pruned_through = %d (%v), want at least %d", pruned, err, top)
		}

		// Nothing left to do: a second run drops nothing.
		res, err = retention.Prune(ctx, b.pool, opts)
		if err != nil || len(res.Partitions) != 0 || res.Moved != 0 {
			t.Errorf("second Prune = %+v, %v; want nothing dropped", res, err)
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
		if counted.Failed != 3 || len(counted.Partitions) != 0 {
			t.Errorf("Count = %+v, want 3 failed", counted)
		}
		res, err := retention.Prune(t.Context(), b.pool, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Failed != 3 || len(res.Partitions) != 0 {
			t.Errorf("Prune = %+v, want 3 failed", res)
		}
		want := append(slices.Clone(b.kept), b.oldDelivered...)
		slices.Sort(want)
		if got := remaining(t, b.pool); !slices.Equal(got, want) {
			t.Errorf("rows left %v, want %v", got, want)
		}
	})

	t.Run("LockedFailedRowKeepsItsPartition", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx := t.Context()
		// A replay holds one old failed row: the move goes around it,
		// and its partition stays.
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
		if _, err := tx.Exec(ctx, "SELECT 1 FROM outbox WHERE id = $1 FOR UPDATE", b.oldFailed[0]); err != nil {
			t.Fatal(err)
		}
		res, err := retention.Prune(ctx, b.pool, retention.Options{DeliveredBefore: b.weekAgo, Batch: 4})
		if err != nil {
			t.Fatal(err)
		}
		if res.Moved != 2 || len(res.Partitions) != 0 {
			t.Errorf("moved %d, dropped %q; want 2 moved (the locked row skipped, without waiting), none dropped", res.Moved, names(res.Partitions))
		}
	})

	t.Run("NothingSelected", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		res, err := retention.Prune(t.Context(), b.pool, retention.Options{})
		if err != nil || res.Failed != 0 || len(res.Partitions) != 0 {
			t.Errorf("Prune with no times = %+v, %v; want nothing", res, err)
		}
		if n := len(remaining(t, b.pool)); n != 24 {
			t.Errorf("%d rows left, want all 24", n)
		}
	})
}

// TestReplayOfAMovedRow replays a failed row while retention moves it to
// another partition: the replay waits for the move, finds the row moved
// (SQLSTATE 40001) and retries, and the row is replayed.
func TestReplayOfAMovedRow(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.Pool(t)
	ids := seed(t, pool, 1, oldFailed)
	testkit.MoveToPartition(t, pool, time.Now().Add(-10*24*time.Hour), ids...)

	mover, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer mover.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck
	if _, err := mover.Exec(ctx, `SELECT set_config('relay.outbox_move', 'on', true)`); err != nil {
		t.Fatal(err)
	}
	if _, err := mover.Exec(ctx, `UPDATE outbox SET partition_at = now() WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	var replayPID int32
	done := make(chan error, 1)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&replayPID); err != nil {
		t.Fatal(err)
	}
	go func() {
		var found bool
		err := conn.QueryRow(ctx, `SELECT outbox_replay($1)`, ids[0]).Scan(&found)
		if err == nil && !found {
			err = errors.New("outbox_replay did not find the row")
		}
		done <- err
	}()
	testkit.WaitFor(t, 10*time.Second, "the replay to wait for the move", func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1`, replayPID).Scan(&waiting)
		return err == nil && waiting
	})
	if err := mover.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("replay of a row moved meanwhile: %v", err)
	}
	var failed bool
	if err := pool.QueryRow(ctx, `SELECT failed_at IS NOT NULL FROM outbox WHERE id = $1`, ids[0]).Scan(&failed); err != nil || failed {
		t.Errorf("row still failed (%v) after its replay", err)
	}
}

// sequence numbers every committed row.
func sequence(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), `SELECT outbox_sequence(100000)`); err != nil {
		t.Fatal(err)
	}
}

func names(parts []retention.Partition) string {
	var s []string
	for _, p := range parts {
		s = append(s, p.Name)
	}
	return strings.Join(s, ",")
}

// TestPruneKeepsCurrentPartitions: a cutoff after the database's clock (an
// app server whose clock runs ahead by more than the retention period, or
// an operator's TIME in the future) drops no partition that has not ended
// by the database's clock: the current one and those made ahead are what
// producers' INSERTs go to, and outbox_partitions_create() does not make
// again a partition dropped before the newest one.
func TestPruneKeepsCurrentPartitions(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	ctx := t.Context()
	ids := seed(t, pool, 3, newDelivered)

	res, err := retention.Prune(ctx, pool, retention.Options{DeliveredBefore: time.Now().Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Partitions {
		if !p.To.Before(time.Now().Add(-time.Minute)) {
			t.Errorf("partition %s (%s to %s) dropped, though it has not ended", p.Name, p.From, p.To)
		}
	}
	if got := remaining(t, pool); !slices.Equal(got, ids) {
		t.Errorf("rows left %v, want %v", got, ids)
	}
	seed(t, pool, 1, "") // a producer's INSERT still finds its partition
}
