// Package retention deletes old outbox rows in small batches: delivered rows
// past the retention period (run on a schedule by the relay, and by `relay
// prune`), and failed rows only when asked explicitly. Each batch is its own
// short transaction, so pruning a large backlog never holds many locks or
// one long transaction, and rows a relay is working on are skipped.
package retention

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultBatch is the most rows deleted per transaction.
const DefaultBatch = 1000

// deleteDeliveredSQL deletes one batch of rows delivered before $1, walking
// outbox_delivered_idx oldest first. SKIP LOCKED leaves rows a replay is
// holding.
const deleteDeliveredSQL = `
WITH doomed AS (
    SELECT id FROM outbox
     WHERE delivered_at < $1
     ORDER BY delivered_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED
)
DELETE FROM outbox AS o
 USING doomed
 WHERE o.id = doomed.id`

// deleteFailedSQL deletes one batch of rows failed before $1, walking
// outbox_failed_idx.
const deleteFailedSQL = `
WITH doomed AS (
    SELECT id FROM outbox
     WHERE failed_at < $1
     ORDER BY failed_at
     LIMIT $2
       FOR UPDATE SKIP LOCKED
)
DELETE FROM outbox AS o
 USING doomed
 WHERE o.id = doomed.id`

// countSQL counts what Prune would delete, from the two partial indexes
// (index-only). A null time counts nothing.
const countSQL = `
SELECT
    CASE WHEN $1::timestamptz IS NULL THEN 0
         ELSE (SELECT count(*) FROM outbox WHERE delivered_at < $1) END,
    CASE WHEN $2::timestamptz IS NULL THEN 0
         ELSE (SELECT count(*) FROM outbox WHERE failed_at < $2) END`

// Executor runs statements: a pool or a connection. Each Exec is its own
// transaction unless the caller passes a transaction.
type Executor interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Options selects the rows to delete. A zero time selects no rows of that
// kind; rows neither delivered nor failed are never deleted.
type Options struct {
	// DeliveredBefore deletes rows delivered before this time.
	DeliveredBefore time.Time
	// FailedBefore deletes rows failed (and not replayed) before this time.
	FailedBefore time.Time
	// Batch is the most rows deleted per transaction. Default DefaultBatch.
	Batch int
	// OnBatch, when set, is called after each batch with its kind
	// ("delivered" or "failed") and the rows it deleted.
	OnBatch func(kind string, n int64)
}

// Result counts deleted (or, from Count, deletable) rows.
type Result struct {
	Delivered int64 `json:"delivered"`
	Failed    int64 `json:"failed"`
}

// Prune deletes the rows opts selects, batch by batch, until none is left
// or ctx ends. It returns what it deleted, also on error.
func Prune(ctx context.Context, db Executor, opts Options) (Result, error) {
	opts.Batch = cmp.Or(opts.Batch, DefaultBatch)
	if opts.Batch < 1 {
		return Result{}, fmt.Errorf("prune batch must be at least 1, got %d", opts.Batch)
	}
	var res Result
	if !opts.DeliveredBefore.IsZero() {
		n, err := drain(ctx, db, deleteDeliveredSQL, "delivered", opts)
		res.Delivered = n
		if err != nil {
			return res, fmt.Errorf("prune delivered rows: %w", err)
		}
	}
	if !opts.FailedBefore.IsZero() {
		n, err := drain(ctx, db, deleteFailedSQL, "failed", opts)
		res.Failed = n
		if err != nil {
			return res, fmt.Errorf("prune failed rows: %w", err)
		}
	}
	return res, nil
}

func drain(ctx context.Context, db Executor, sql, kind string, opts Options) (int64, error) {
	before := opts.DeliveredBefore
	if kind == "failed" {
		before = opts.FailedBefore
	}
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tag, err := db.Exec(ctx, sql, before, opts.Batch)
		if err != nil {
			return total, err
		}
		n := tag.RowsAffected()
		total += n
		if opts.OnBatch != nil && n > 0 {
			opts.OnBatch(kind, n)
		}
		if n < int64(opts.Batch) {
			return total, nil
		}
	}
}

// Count reports how many rows Prune would delete now.
func Count(ctx context.Context, db Executor, opts Options) (Result, error) {
	var res Result
	if err := db.QueryRow(ctx, countSQL, nullTime(opts.DeliveredBefore), nullTime(opts.FailedBefore)).Scan(&res.Delivered, &res.Failed); err != nil {
		return Result{}, fmt.Errorf("count prunable rows: %w", err)
	}
	return res, nil
}

// nullTime is nil for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
