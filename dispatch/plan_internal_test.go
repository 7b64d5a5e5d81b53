package dispatch

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestPlans checks the plans of the claim and of the row gauges. On an
// outbox whose statistics are stale, the claim goes through the
// commit_seq and key indexes and the read of a batch through the primary
// key: never outbox_undelivered_idx, never a scan of the table. The
// gauges, which read the schema's row-state views, are served by the
// partial indexes (outbox_undelivered_idx, outbox_failed_idx) once the statistics are current (with stale
// statistics that say every row is pending, the planner counts them with
// one scan of the table per sample).
func TestPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := pgtest.Migrated(t)
	pgtest.StaleOutbox(t, pool)

	// The rows are in the current partition; the others are empty (a
	// scan of an empty partition costs nothing and reads nothing).
	var current string
	if err := pool.QueryRow(ctx, `SELECT partition::text FROM outbox_partitions WHERE now() >= from_time AND now() < to_time`).Scan(&current); err != nil {
		t.Fatal(err)
	}
	noScan := []string{"Seq Scan on " + current + " ", "undelivered_idx", "->  Sort "}
	t.Run("AdmitWithStaleStatistics", func(t *testing.T) {
		// As the feeder runs it (noSortSQL): a Merge Append of the
		// partitions' commit_seq indexes, which stops after LIMIT rows.
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // read only
		if _, err := tx.Exec(ctx, noSortSQL); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, "EXPLAIN "+admitSQL, int64(19900), 500, true, false, false)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		checkPlanText(t, strings.Join(lines, "\n"), []string{"Merge Append", current + "_commit_seq_idx", current + "_key_idx"}, noScan)
	})
	t.Run("ReadWithStaleStatistics", func(t *testing.T) {
		checkPlan(t, pool, readSQL, []any{[]int64{100, 200}, int64(7), true, false, false},
			[]string{current + "_pkey", current + "_key_idx"}, noScan[:2])
	})
	t.Run("Gauges", func(t *testing.T) {
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE outbox"); err != nil {
			t.Fatal(err)
		}
		checkPlan(t, pool, sampleSQL, nil,
			[]string{current + "_undelivered_idx", current + "_failed_idx"}, noScan[:1])
	})
}

// checkPlan explains sql with args and checks that the plan names every
// string of want and none of not.
func checkPlan(t *testing.T, pool *pgxpool.Pool, sql string, args []any, want, not []string) {
	t.Helper()
	checkPlanText(t, pgtest.Explain(t, pool, sql, args...), want, not)
}

func checkPlanText(t *testing.T, plan string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(plan, w) {
			t.Errorf("plan does not use %s:\n%s", w, plan)
		}
	}
	for _, n := range not {
		if strings.Contains(plan, n) {
			t.Errorf("plan has %s:\n%s", n, plan)
		}
	}
}
