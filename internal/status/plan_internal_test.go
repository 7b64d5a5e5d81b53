package status

import (
	"context"
	"strings"
	"testing"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestPlans checks that the counts and the oldest undelivered row, read
// through the schema's row-state views, are served by the partial indexes
// and never scan the outbox.
func TestPlans(t *testing.T) {
	t.Parallel()
	_, pool := pgtest.Migrated(t)
	pgtest.StaleOutbox(t, pool)
	if _, err := pool.Exec(context.Background(), "VACUUM ANALYZE outbox"); err != nil {
		t.Fatal(err)
	}
	// The rows are in the current partition; the others are empty.
	var current string
	if err := pool.QueryRow(context.Background(), `SELECT partition::text FROM outbox_partitions WHERE now() >= from_time AND now() < to_time`).Scan(&current); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, sql string
		want      []string
	}{
		{"Counts", countsSQL, []string{"_undelivered_idx", "_delivered_idx", "_failed_idx"}},
		{"Oldest", oldestSQL, []string{"_undelivered_idx", "_pkey"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := pgtest.Explain(t, pool, tt.sql)
			for _, w := range tt.want {
				if !strings.Contains(plan, w) {
					t.Errorf("plan does not use %s:\n%s", w, plan)
				}
			}
			if strings.Contains(plan, "Seq Scan on "+current+" ") {
				t.Errorf("plan scans the outbox:\n%s", plan)
			}
		})
	}
}
