package retention

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// The outbox is partitioned by time (migration 00008): delivered rows go
// with their partition, never row by row. A partition is dropped once it
// ended before the cutoff and every row in it was delivered before the
// cutoff; failed rows are moved to the current partition first (they are
// kept until replayed or pruned by hand), and a partition holding pending
// or in-flight rows is kept. The SQL functions named here are the schema's.

// partitionsSQL lists the partitions and what keeps each from being
// dropped for a cutoff (” when nothing does).
const partitionsSQL = `
SELECT partition::text, from_time, to_time, rows_estimate, coalesce(blocker, '')
  FROM outbox_partition_blockers($1)`

// cutoffSQL is a retention cutoff no later than the database's clock. A
// later one (an app server's clock running ahead by more than the
// retention period, an operator's TIME in the future) would take the
// current partition and those made ahead for ended: producers' INSERTs
// would find no partition, and outbox_partitions_create() makes no
// partition older than the newest one again.
const cutoffSQL = `SELECT least($1::timestamptz, now())`

// notAfterNow is cutoff, or the database's now() when that is earlier.
func notAfterNow(ctx context.Context, db Executor, cutoff time.Time) (time.Time, error) {
	if err := db.QueryRow(ctx, cutoffSQL, cutoff).Scan(&cutoff); err != nil {
		return time.Time{}, fmt.Errorf("read the database's clock: %w", err)
	}
	return cutoff, nil
}

// blockerSQL is one partition's blocker, read again after failed rows
// were moved out of it.
const blockerSQL = `
SELECT coalesce(blocker, '') FROM outbox_partition_blockers($1) WHERE partition = $2::regclass`

// detachSQL and finalizeSQL build the DETACH statements (which cannot run
// in a function or a transaction block) from the catalog's own quoting of
// the names.
const (
	detachSQL   = `SELECT format('ALTER TABLE %s DETACH PARTITION %s CONCURRENTLY', 'outbox'::regclass, $1::regclass)`
	finalizeSQL = `SELECT format('ALTER TABLE %s DETACH PARTITION %s FINALIZE', 'outbox'::regclass, $1::regclass)`
)

// dropDetachedSQL checks a detached partition again and drops it, or puts
// it back when a row in it was replayed meanwhile.
const dropDetachedSQL = `SELECT outbox_partition_drop_detached($1::regclass, $2, $3, $4)`

// moveFlagSQL lets the outbox's INSERT triggers, which fire when an UPDATE
// moves a row to another partition, keep the row as it is.
const moveFlagSQL = `SELECT set_config('relay.outbox_move', 'on', true)`

// moveFailedSQL moves one batch of failed rows of a partition to the
// current one (partition_at = now()); every other column is kept. SKIP
// LOCKED leaves rows a replay is holding; a replay that finds its row
// moved retries (outbox_replay).
const moveFailedSQL = `
WITH moved AS (
    SELECT id, partition_at FROM outbox
     WHERE partition_at >= $1 AND partition_at < $2 AND failed_at IS NOT NULL
     LIMIT $3
       FOR UPDATE SKIP LOCKED
)
UPDATE outbox AS o SET partition_at = now()
  FROM moved
 WHERE o.id = moved.id AND o.partition_at = moved.partition_at`

// Blockers a partition may have (outbox_partition_blockers).
const (
	BlockerNewer         = "newer than the retention period"
	BlockerUndelivered   = "undelivered rows"
	BlockerFailed        = "failed rows"
	BlockerRecent        = "rows delivered within the retention period"
	BlockerDetachPending = "detach pending"
)

// Partition is one partition of the outbox.
type Partition struct {
	Name string    `json:"name"`
	From time.Time `json:"from"` // -infinity for the first partition of a migrated outbox
	To   time.Time `json:"to"`
	// RowsEstimate is the planner's estimate (as of the last VACUUM or
	// ANALYZE), not a count.
	RowsEstimate int64 `json:"rows_estimate"`
	// Blocker says what keeps the partition from being dropped for the
	// cutoff it was read with; empty when nothing does.
	Blocker string `json:"blocker,omitempty"`

	// The bounds as PostgreSQL has them (From may be -infinity).
	from, to pgtype.Timestamptz
}

// Partitions lists the outbox's partitions, oldest first, with what keeps
// each from being dropped for cutoff.
func Partitions(ctx context.Context, db Executor, cutoff time.Time) ([]Partition, error) {
	cutoff, err := notAfterNow(ctx, db, cutoff)
	if err != nil {
		return nil, fmt.Errorf("list outbox partitions: %w", err)
	}
	rows, err := db.Query(ctx, partitionsSQL, cutoff)
	if err != nil {
		return nil, fmt.Errorf("list outbox partitions: %w", err)
	}
	parts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Partition, error) {
		var p Partition
		err := row.Scan(&p.Name, &p.from, &p.to, &p.RowsEstimate, &p.Blocker)
		p.From, p.To = boundTime(p.from), boundTime(p.to)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list outbox partitions: %w", err)
	}
	return parts, nil
}

// dropPartitions drops the partitions whose rows were all delivered before
// cutoff, moving failed rows out first.
func dropPartitions(ctx context.Context, db Executor, cutoff time.Time, opts Options, res *Result) error {
	cutoff, err := notAfterNow(ctx, db, cutoff)
	if err != nil {
		return err
	}
	parts, err := Partitions(ctx, db, cutoff)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return err
		}
		if p.Blocker == BlockerDetachPending {
			// A detach cut off earlier (the relay stopped, or its budget
			// ran out): finish it, then check and drop as usual.
			if err := execBuilt(ctx, db, finalizeSQL, p.Name); err != nil {
				return fmt.Errorf("finish detaching outbox partition %s: %w", p.Name, err)
			}
			if err := dropDetached(ctx, db, p, cutoff, opts, res); err != nil {
				return err
			}
			continue
		}
		if p.Blocker == BlockerFailed {
			n, err := moveFailed(ctx, db, p, opts)
			res.Moved += n
			if err != nil {
				return fmt.Errorf("move failed rows out of outbox partition %s: %w", p.Name, err)
			}
			if err := db.QueryRow(ctx, blockerSQL, cutoff, p.Name).Scan(&p.Blocker); err != nil {
				return fmt.Errorf("check outbox partition %s: %w", p.Name, err)
			}
		}
		switch p.Blocker {
		case "":
		case BlockerNewer:
			continue
		default:
			res.Kept = append(res.Kept, p)
			continue
		}
		if err := execBuilt(ctx, db, detachSQL, p.Name); err != nil {
			return fmt.Errorf("detach outbox partition %s: %w", p.Name, err)
		}
		if err := dropDetached(ctx, db, p, cutoff, opts, res); err != nil {
			return err
		}
	}
	return nil
}

func dropDetached(ctx context.Context, db Executor, p Partition, cutoff time.Time, opts Options, res *Result) error {
	var dropped bool
	if err := db.QueryRow(ctx, dropDetachedSQL, p.Name, p.from, p.to, cutoff).Scan(&dropped); err != nil {
		return fmt.Errorf("drop detached outbox partition %s: %w", p.Name, err)
	}
	if !dropped {
		// A row in it was replayed between the check and the detach: it
		// is a partition again, kept.
		p.Blocker = BlockerUndelivered
		res.Kept = append(res.Kept, p)
		return nil
	}
	res.Partitions = append(res.Partitions, p)
	if opts.OnPartition != nil {
		opts.OnPartition(p)
	}
	return nil
}

// execBuilt runs the statement the query build returns for partition.
func execBuilt(ctx context.Context, db Executor, build, partition string) error {
	var stmt string
	if err := db.QueryRow(ctx, build, partition).Scan(&stmt); err != nil {
		return err
	}
	_, err := db.Exec(ctx, stmt)
	return err
}

// moveFailed moves p's failed rows to the current partition, a batch per
// transaction.
func moveFailed(ctx context.Context, db Executor, p Partition, opts Options) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := moveBatch(ctx, db, p, opts.Batch)
		total += n
		if err != nil || n < int64(opts.Batch) {
			return total, err
		}
	}
}

func moveBatch(ctx context.Context, db Executor, p Partition, batch int) (int64, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after commit
	if _, err := tx.Exec(ctx, moveFlagSQL); err != nil {
		return 0, err
	}
	tag, err := tx.Exec(ctx, moveFailedSQL, p.from, p.to, batch)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), tx.Commit(ctx)
}

// boundTime is a partition bound as a time: the zero time for -infinity
// (MINVALUE), the year 9999 for infinity.
func boundTime(v pgtype.Timestamptz) time.Time {
	switch v.InfinityModifier {
	case pgtype.NegativeInfinity:
		return time.Time{}
	case pgtype.Infinity:
		return time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	return v.Time
}
