package pgtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// staleOutboxSQL fills a migrated schema's outbox behind the planner's
// back, one statement (and transaction) each: statistics are gathered on
// 10 numbered pending rows (autovacuum off on every partition, so they stay), then 20,000
// rows are added and numbered, all but 200 of them delivered a day ago and 200
// failed. A plan that trusts the statistics sees a tiny table of pending
// rows; one that does not sees what is there.
var staleOutboxSQL = []string{
	autovacuumOffSQL,
	`INSERT INTO outbox (app_id, event_type, data)
	 SELECT 'acme', 'cut.completed', jsonb_build_object('entity_id', 'c' || i, 'asset_id', 'a' || (i % 50))
	   FROM generate_series(1, 10) i`,
	`SELECT outbox_sequence(100000)`,
	`ANALYZE outbox`,
	`INSERT INTO outbox (app_id, event_type, data)
	 SELECT 'acme', 'cut.completed', jsonb_build_object('entity_id', 'c' || i, 'asset_id', 'a' || (i % 50))
	   FROM generate_series(11, 20010) i`,
	`SELECT outbox_sequence(100000)`,
	`UPDATE outbox SET enqueued_at = now() - interval '1 day', delivered_at = now() - interval '1 day', svix_message_id = 'msg_' || id WHERE id % 100 NOT IN (0, 1)`,
	`UPDATE outbox SET enqueued_at = now(), failed_at = now(), last_error = '422' WHERE id % 100 = 1`,
}

// autovacuumOffSQL turns autovacuum off on every partition of the outbox,
// so that statistics taken by hand stay as they are.
const autovacuumOffSQL = `DO $$
	 DECLARE p regclass;
	 BEGIN
	     FOR p IN SELECT partition FROM outbox_partitions LOOP
	         EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', p);
	     END LOOP;
	 END $$`

// AutovacuumOff turns autovacuum off on every partition of pool's
// migrated outbox, so that the statistics a test takes stay as they are.
func AutovacuumOff(tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := pool.Exec(ctx, autovacuumOffSQL); err != nil {
		tb.Fatalf("pgtest: turn autovacuum off on the outbox: %v", err)
	}
}

// StaleOutbox gives pool's migrated schema an outbox of 20,010 rows, mostly
// delivered, whose planner statistics were taken when it held 10 pending
// rows: the state a table is in after it grew during an outage.
func StaleOutbox(tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range staleOutboxSQL {
		if _, err := pool.Exec(ctx, q); err != nil {
			tb.Fatalf("pgtest: fill the outbox behind stale statistics: %v", err)
		}
	}
}

// Explain returns the plan PostgreSQL would run sql with args by, one line
// of EXPLAIN's text a line.
func Explain(tb testing.TB, pool *pgxpool.Pool, sql string, args ...any) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := pool.Query(ctx, "EXPLAIN "+sql, args...)
	if err != nil {
		tb.Fatalf("pgtest: explain: %v", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("pgtest: explain: %v", err)
	}
	return strings.Join(lines, "\n")
}
