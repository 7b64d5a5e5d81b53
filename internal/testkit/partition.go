package testkit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MoveToPartition moves outbox rows to a partition of their own covering
// the hour from from (created and attached when missing), as if they had
// been written then: retention sees that partition as ended at from+1h.
// Only partition_at changes; the rows keep every other column.
func MoveToPartition(tb testing.TB, pool *pgxpool.Pool, from time.Time, ids ...int64) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	from = from.UTC().Truncate(time.Hour)
	name := "outbox_ptest_" + from.Format("20060102_150405")
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			ident := pgx.Identifier{name}.Sanitize()
			if _, err := tx.Exec(ctx, "CREATE TABLE "+ident+" (LIKE outbox INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"); err != nil {
				return err
			}
			bound := fmt.Sprintf("FOR VALUES FROM ('%s') TO ('%s')", from.Format(time.RFC3339), from.Add(time.Hour).Format(time.RFC3339))
			if _, err := tx.Exec(ctx, "ALTER TABLE outbox ATTACH PARTITION "+ident+" "+bound); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `SELECT set_config('relay.outbox_move', 'on', true)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE outbox SET partition_at = $1 WHERE id = ANY ($2)`, from, ids)
		return err
	})
	if err != nil {
		tb.Fatalf("testkit: move rows %v to a partition from %s: %v", ids, from, err)
	}
	return name
}
