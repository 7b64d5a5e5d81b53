package dispatch

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// Ordering modes: which rows must reach Svix in commit order (commit_seq).
const (
	// OrderByAsset orders the rows of one (app_id, data.asset_id): an
	// asset's own events and the cut and render events of its cuts and
	// renders.
	OrderByAsset = "asset"
	// OrderByEntity orders the rows of one (app_id, data.entity_id) only.
	// The relay finds a key's rows through its asset, so an entity must
	// belong to one asset.
	OrderByEntity = "entity"
	// OrderOff sends rows as soon as they are numbered.
	OrderOff = "off"
)

// demoteSQL hands rows that are no longer heads back to waiting (under
// the exclusive claim lock): the row before them claims them when it ends.
// It returns the rows that are heads after all (their predecessor ended
// meanwhile), which the job sends.
const demoteSQL = `
WITH c AS (
    SELECT o.id,
           EXISTS (SELECT 1 FROM outbox e
                    WHERE e.app_id = o.app_id AND (e.data ->> 'asset_id') = (o.data ->> 'asset_id')
                      AND e.commit_seq < o.commit_seq AND e.partition_at <= ` + notAhead + `
                      AND e.delivered_at IS NULL
                      AND ($3::boolean OR num_nulls(e.failed_at) = 1)
                      AND (NOT $4::boolean OR e.data ->> 'entity_id' = o.data ->> 'entity_id')) AS behind
      FROM outbox o
     WHERE o.id = ANY ($1::bigint[]) AND o.partition_at <= ` + notAhead + ` AND o.job_id = $2 AND num_nulls(o.delivered_at, o.failed_at) = 2
), d AS (
    UPDATE outbox o SET enqueued_at = NULL, job_id = NULL
      FROM c WHERE o.id = c.id AND c.behind
)
SELECT id FROM c WHERE NOT behind`

// successorSQL finds the new head of each key whose row just ended, when
// it is numbered and not claimed yet: it is claimed in the same
// transaction, so the next row of a key is on its way the moment its
// predecessor's outcome commits. One probe of outbox_key_idx per key.
const successorSQL = `
SELECT h.id
  FROM (SELECT DISTINCT app_id, asset_id, entity_id
          FROM unnest($1::text[], $2::text[], $3::text[]) AS k (app_id, asset_id, entity_id)) k
 CROSS JOIN LATERAL (
       SELECT e.id, e.enqueued_at, e.failed_at, e.commit_seq
         FROM outbox e
        WHERE e.app_id = k.app_id AND (e.data ->> 'asset_id') = k.asset_id AND e.partition_at <= ` + notAhead + `
          AND e.delivered_at IS NULL
          AND ($4::boolean OR num_nulls(e.failed_at) = 1)
          AND (k.entity_id = '' OR e.data ->> 'entity_id' = k.entity_id)
        ORDER BY e.commit_seq
        LIMIT 1) h
 WHERE h.enqueued_at IS NULL AND h.failed_at IS NULL AND h.commit_seq IS NOT NULL`

// claimIntoSQL hands the next rows of a running job's keys to that job.
const claimIntoSQL = `
UPDATE outbox AS o SET enqueued_at = clock_timestamp(), job_id = $2
 WHERE o.id = ANY ($1::bigint[]) AND o.partition_at <= ` + notAhead + ` AND o.enqueued_at IS NULL AND num_nulls(o.delivered_at, o.failed_at) = 2
RETURNING o.id`

// demote hands back rows behind an undelivered earlier row of their key
// (one replayed after they were claimed) and returns those that are heads
// after all.
func (r *Relay) demote(ctx context.Context, jobID int64, ids []int64) ([]int64, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin hand-back: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after commit
	if _, err := tx.Exec(ctx, claimLockSQL); err != nil {
		return nil, fmt.Errorf("take the claim lock: %w", err)
	}
	res, err := tx.Query(ctx, demoteSQL, ids, jobID, r.cfg.BlockOnFailure, r.cfg.Ordering == OrderByEntity)
	if err != nil {
		return nil, fmt.Errorf("hand back rows behind an earlier row: %w", err)
	}
	heads, err := pgx.CollectRows(res, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("hand back rows behind an earlier row: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit hand-back: %w", err)
	}
	if len(heads) < len(ids) {
		r.log.Info("rows wait for an earlier row of their key put back by a replay", zap.Int("rows", len(ids)-len(heads)))
	}
	return heads, nil
}

// claimSuccessors claims the next row of every key whose row ended in
// rows (the rows whose outcome was applied): into job jobID when keep is
// set, returning their ids, else into a new job. It runs in the recording
// transaction tx.
func (r *Relay) claimSuccessors(ctx context.Context, tx pgx.Tx, jobID int64, rows []*batchRow, keep bool) ([]int64, error) {
	var apps, assets, entities []string
	for _, b := range rows {
		if b.res.kind == rowDelivered || b.res.kind == rowFailed && !r.cfg.BlockOnFailure {
			apps = append(apps, b.appID)
			assets = append(assets, b.assetID)
			entities = append(entities, r.entityKey(b))
		}
	}
	if len(apps) == 0 {
		return nil, nil
	}
	// The claim lock (see claimLockSQL) guards only the decision below, so
	// it is taken here, not at the start of the outcome transaction: the
	// outcomes are written without holding admission back, and the query
	// below, whose snapshot is taken once the lock is held, sees every
	// admission and hand-back committed before it.
	if _, err := tx.Exec(ctx, claimLockSharedSQL); err != nil {
		return nil, fmt.Errorf("take the claim lock: %w", err)
	}
	res, err := tx.Query(ctx, successorSQL, apps, assets, entities, r.cfg.BlockOnFailure)
	if err != nil {
		return nil, fmt.Errorf("find the next rows of batch job %d's keys: %w", jobID, err)
	}
	heads, err := pgx.CollectRows(res, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("find the next rows of batch job %d's keys: %w", jobID, err)
	}
	if !keep {
		return nil, r.claim(ctx, tx, heads)
	}
	res, err = tx.Query(ctx, claimIntoSQL, heads, jobID)
	if err != nil {
		return nil, fmt.Errorf("claim the next rows of batch job %d's keys: %w", jobID, err)
	}
	kept, err := pgx.CollectRows(res, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("claim the next rows of batch job %d's keys: %w", jobID, err)
	}
	return kept, nil
}

func (r *Relay) entityKey(b *batchRow) string {
	if r.cfg.Ordering != OrderByEntity {
		return ""
	}
	return b.entityID
}
