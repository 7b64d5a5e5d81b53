// Package retention removes old outbox rows: delivered rows past the
// retention period by dropping whole partitions of the outbox (run on a
// schedule by the relay, and by `relay prune`), and failed rows only when
// asked explicitly, deleted in small batches. A partition holding pending
// or in-flight rows is kept; failed rows are moved out of a partition
// before it is dropped. Each batch is its own short transaction, a
// partition is detached CONCURRENTLY (producers never wait for it), and
// rows a relay or a replay is working on are skipped.
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

// countFailedSQL counts what Prune would delete of failed rows, from
// outbox_failed_idx (index-only).
const countFailedSQL = `SELECT count(*) FROM outbox WHERE failed_at < $1`

// Executor runs statements outside a transaction (a pool or a
// connection): DETACH ... CONCURRENTLY cannot run in one.
type Executor interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Options selects the rows to delete. A zero time selects no rows of that
// kind; rows neither delivered nor failed are never deleted.
type Options struct {
	// DeliveredBefore drops the partitions that ended before this time
	// and hold only rows delivered before it (failed rows are moved out
	// of them first; pending and in-flight rows keep their partition). A
	// time later than the database's now() is taken as now().
	DeliveredBefore time.Time
	// FailedBefore deletes rows failed (and not replayed) before this time.
	FailedBefore time.Time
	// Batch is the most rows deleted, or moved, per transaction. Default
	// DefaultBatch.
	Batch int
	// OnBatch, when set, is called after each batch of deleted rows with
	// its kind ("failed") and the rows it deleted.
	OnBatch func(kind string, n int64)
	// OnPartition, when set, is called after each partition dropped.
	OnPartition func(p Partition)
}

// Result says what Prune removed (or, from Count, would remove).
type Result struct {
	// Delivered estimates the delivered rows of the partitions dropped
	// (the planner's estimate: they are not counted one by one).
	Delivered int64 `json:"delivered"`
	// Failed counts the failed rows deleted.
	Failed int64 `json:"failed"`
	// Partitions are the partitions dropped.
	Partitions []Partition `json:"partitions"`
	// Moved counts the failed rows moved out of partitions to drop.
	Moved int64 `json:"moved_failed"`
	// Kept are the partitions past the cutoff kept, with what keeps each.
	Kept []Partition `json:"kept"`
}

// Prune deletes the rows opts selects, batch by batch, until none is left
// or ctx ends. It returns what it deleted, also on error.
func Prune(ctx context.Context, db Executor, opts Options) (Result, error) {
	opts.Batch = cmp.Or(opts.Batch, DefaultBatch)
	if opts.Batch < 1 {
		return Result{}, fmt.Errorf("prune batch must be at least 1, got %d", opts.Batch)
	}
	res := Result{Partitions: []Partition{}, Kept: []Partition{}}
	// Failed rows first: those deleted need not be moved.
	if !opts.FailedBefore.IsZero() {
		n, err := drain(ctx, db, deleteFailedSQL, "failed", opts)
		res.Failed = n
		if err != nil {
			return res, fmt.Errorf("prune failed rows: %w", err)
		}
	}
	if !opts.DeliveredBefore.IsZero() {
		err := dropPartitions(ctx, db, opts.DeliveredBefore, opts, &res)
		for _, p := range res.Partitions {
			res.Delivered += p.RowsEstimate
		}
		if err != nil {
			return res, fmt.Errorf("prune delivered rows: %w", err)
		}
	}
	return res, nil
}

func drain(ctx context.Context, db Executor, sql, kind string, opts Options) (int64, error) {
	before := opts.FailedBefore
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

// Count reports what Prune would remove now: the failed rows it would
// delete, and the partitions it would drop (those blocked only by failed
// rows too, which it would move out first) with their estimated rows.
func Count(ctx context.Context, db Executor, opts Options) (Result, error) {
	res := Result{Partitions: []Partition{}, Kept: []Partition{}}
	if !opts.FailedBefore.IsZero() {
		if err := db.QueryRow(ctx, countFailedSQL, opts.FailedBefore).Scan(&res.Failed); err != nil {
			return Result{}, fmt.Errorf("count prunable rows: %w", err)
		}
	}
	if opts.DeliveredBefore.IsZero() {
		return res, nil
	}
	parts, err := Partitions(ctx, db, opts.DeliveredBefore)
	if err != nil {
		return Result{}, err
	}
	for _, p := range parts {
		switch p.Blocker {
		case "", BlockerFailed, BlockerDetachPending:
			res.Partitions = append(res.Partitions, p)
			res.Delivered += p.RowsEstimate
		case BlockerNewer:
		default:
			res.Kept = append(res.Kept, p)
		}
	}
	return res, nil
}
