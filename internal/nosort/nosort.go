// Package nosort runs the relay's ordered reads of the outbox (ORDER BY
// an indexed column, LIMIT) with the planner's Sort turned off.
//
// On the partitioned outbox such a read is a Merge Append of one index
// scan per partition, which stops after LIMIT rows, or a Sort of every
// row that matches. Planner statistics taken while a partition was small
// (a backlog that grew during an outage, before autovacuum's ANALYZE
// caught up) make the Sort look cheaper, and a read that should cost
// LIMIT rows then costs the whole backlog, every time it runs. With
// enable_sort off the planner picks a Sort only when no plan without one
// exists.
//
// The setting is SET LOCAL, in a transaction of its own: BEGIN, SET, the
// query and COMMIT travel as one batch (one round trip, one connection,
// which a transaction pooler such as PgBouncer keeps for the whole batch).
package nosort

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SQL turns the Sort off for the rest of the transaction.
const SQL = `SET LOCAL enable_sort = off`

// Query runs sql with args in a read-only transaction with SQL in force
// and hands its rows to fn. A connection left in a failed transaction is
// discarded by the pool on release, so no caller ever sees the setting or
// the transaction.
func Query(ctx context.Context, pool *pgxpool.Pool, sql string, args []any, fn func(pgx.Rows) error) error {
	return run(ctx, pool, "BEGIN READ ONLY", sql, args, fn)
}

// Write is Query for a statement that also writes (a data-modifying WITH):
// its transaction is read-write.
func Write(ctx context.Context, pool *pgxpool.Pool, sql string, args []any, fn func(pgx.Rows) error) error {
	return run(ctx, pool, "BEGIN", sql, args, fn)
}

func run(ctx context.Context, pool *pgxpool.Pool, begin, sql string, args []any, fn func(pgx.Rows) error) error {
	b := &pgx.Batch{}
	b.Queue(begin)
	b.Queue(SQL)
	b.Queue(sql, args...).Query(fn)
	b.Queue("COMMIT")
	return pool.SendBatch(ctx, b).Close()
}

// Scan is Query with each row scanned into dest, then fn called.
func Scan(ctx context.Context, pool *pgxpool.Pool, sql string, args, dest []any, fn func() error) error {
	return Query(ctx, pool, sql, args, func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, dest, fn)
		return err
	})
}
