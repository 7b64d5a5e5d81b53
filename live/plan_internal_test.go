package live

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mediaplatform/relay/internal/nosort"
	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestReadsDoNotSortTheOutbox: on an outbox whose statistics are stale
// (taken at 10 rows, 20,010 there), the hub's tail and replay reads, run
// as the hub runs them (with nosort.SQL), go through a Merge Append of
// the partitions' indexes that stops at the LIMIT, never a Sort of every
// row after the cursor.
func TestReadsDoNotSortTheOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := pgtest.Migrated(t)
	pgtest.StaleOutbox(t, pool)
	for name, q := range map[string]struct {
		sql  string
		args []any
		idx  string
	}{
		"tail":   {tailSQL, []any{int64(0), tailBatch}, "_commit_seq_idx"},
		"replay": {replaySQL, []any{"acme", int64(0), int64(1 << 40), nil, nil, 1001}, "_live_replay_idx"},
	} {
		t.Run(name, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx) //nolint:errcheck // read only
			if _, err := tx.Exec(ctx, nosort.SQL); err != nil {
				t.Fatal(err)
			}
			rows, err := tx.Query(ctx, "EXPLAIN "+q.sql, q.args...)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			plan := strings.Join(lines, "\n")
			if !strings.Contains(plan, "Merge Append") || !strings.Contains(plan, q.idx) || strings.Contains(plan, "Sort  (") {
				t.Fatalf("%s read with stale statistics: want a Merge Append of %s and no Sort, got\n%s", name, q.idx, plan)
			}
		})
	}
}
