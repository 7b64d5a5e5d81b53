package dispatch

import (
	"context"
	"strings"
	"testing"

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

	noScan := []string{"Seq Scan on outbox", "outbox_undelivered_idx"}
	t.Run("AdmitWithStaleStatistics", func(t *testing.T) {
		checkPlan(t, pool, admitSQL, []any{int64(19900), 500, true, false, false},
			[]string{"outbox_commit_seq_idx", "outbox_key_idx"}, noScan)
	})
	t.Run("ReadWithStaleStatistics", func(t *testing.T) {
		checkPlan(t, pool, readSQL, []any{[]int64{100, 200}, int64(7), true, false, false},
			[]string{"outbox_pkey", "outbox_key_idx"}, noScan)
	})
	t.Run("Gauges", func(t *testing.T) {
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE outbox"); err != nil {
			t.Fatal(err)
		}
		checkPlan(t, pool, sampleSQL, nil,
			[]string{"outbox_undelivered_idx", "outbox_failed_idx"}, []string{"Seq Scan on outbox"})
	})
}

// checkPlan explains sql with args and checks that the plan names every
// string of want and none of not.
func checkPlan(t *testing.T, pool *pgxpool.Pool, sql string, args []any, want, not []string) {
	t.Helper()
	plan := pgtest.Explain(t, pool, sql, args...)
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
