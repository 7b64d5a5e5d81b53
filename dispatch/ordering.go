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
// meanwhile), which the job sends. $5 and $6 are the rows' partSpan.
const demoteSQL = `
WITH c AS (
    SELECT o.id, o.partition_at,
           EXISTS (SELECT 1 FROM outbox e
                    WHERE e.app_id = o.app_id AND (e.data ->> 'asset_id') = (o.data ->> 'asset_id')
                      AND e.commit_seq < o.commit_seq AND e.partition_at <= ` + notAhead + `
                      AND e.delivered_at IS NULL
                      AND ($3::boolean OR num_nulls(e.failed_at) = 1)
                      AND (NOT $4::boolean OR e.data ->> 'entity_id' = o.data ->> 'entity_id')) AS behind
      FROM outbox o
     WHERE o.id = ANY ($1::bigint[]) AND o.partition_at >= $5 AND o.partition_at <= $6 AND o.partition_at <= ` + notAhead + `
       AND o.job_id = $2 AND num_nulls(o.delivered_at, o.failed_at) = 2
), d AS (
    UPDATE outbox o SET enqueued_at = NULL, job_id = NULL
      FROM c WHERE o.id = c.id AND o.partition_at = c.partition_at AND c.behind
       AND o.partition_at >= $5 AND o.partition_at <= $6 AND o.partition_at <= ` + notAhead + `
)
SELECT id, partition_at FROM c WHERE NOT behind`

// successorSQL finds the new head of each key whose row just ended, when
// it is numbered and not claimed yet: it is claimed in the same
// transaction, so the next row of a key is on its way the moment its
// predecessor's outcome commits. One probe of outbox_key_idx per key (of
// every partition not ahead: a key's next row may be in any of them, older
// or newer than its predecessor's, since partition_at is when a
// transaction started and commit_seq when it committed). It returns the
// rows' partition_at, which bounds the lookups of the job they go to.
const successorSQL = `
SELECT h.id, h.partition_at
  FROM (SELECT DISTINCT app_id, asset_id, entity_id
          FROM unnest($1::text[], $2::text[], $3::text[]) AS k (app_id, asset_id, entity_id)) k
 CROSS JOIN LATERAL (
       SELECT e.id, e.partition_at, e.enqueued_at, e.failed_at, e.commit_seq
         FROM outbox e
        WHERE e.app_id = k.app_id AND (e.data ->> 'asset_id') = k.asset_id AND e.partition_at <= ` + notAhead + `
          AND e.delivered_at IS NULL
          AND ($4::boolean OR num_nulls(e.failed_at) = 1)
          AND (k.entity_id = '' OR e.data ->> 'entity_id' = k.entity_id)
        ORDER BY e.commit_seq
        LIMIT 1) h
 WHERE h.enqueued_at IS NULL AND h.failed_at IS NULL AND h.commit_seq IS NOT NULL`

// seenHighSQL takes the shared claim lock (see claimLockSQL) and returns
// the highest commit_seq this transaction can see, as the last numbering
// step wrote it (outbox_sequence_state; a read of the outbox's index would
// step over a running step's entries); the statement's snapshot is taken
// before the lock is granted, so it sees no more than the successor query
// that follows it. Without the row (deleted by hand) it says 0, and every
// outcome rechecks its keys.
const seenHighSQL = `
SELECT pg_advisory_xact_lock_shared(hashtextextended('relay.outbox_claim', 'outbox'::regclass::oid::bigint))::text,
       coalesce((SELECT numbered_through FROM outbox_sequence_state), 0)`

// recheckSQL is successorSQL once the outcome has committed, run only
// when the sequencer handed out numbers above $5 (the highest the outcome
// transaction saw) since: the sequence moves before a step commits, so
// when it has not moved, every row numbered later commits after the
// outcome and admission claims it.
const recheckSQL = successorSQL + `
   AND (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_commit_seq) > $5`

// claimSuccessorsIntoSQL is successorSQL claiming the rows it finds into
// the running job $5 in the same statement, and returning what the job
// sends (rowColumns, without the head test: each row returned is the
// head of its key as of this statement, which found it as such), so the
// job need not read them again.
const claimSuccessorsIntoSQL = `
WITH h AS (` + successorSQL + `
)
UPDATE outbox AS o SET enqueued_at = clock_timestamp(), job_id = $5
  FROM h
 WHERE o.id = h.id AND o.partition_at = h.partition_at AND o.partition_at <= ` + notAhead + `
   AND o.enqueued_at IS NULL AND num_nulls(o.delivered_at, o.failed_at) = 2
RETURNING ` + rowColumns

// demote hands back rows behind an undelivered earlier row of their key
// (one replayed after they were claimed) and returns those that are heads
// after all. span covers the rows.
func (r *Relay) demote(ctx context.Context, jobID int64, ids []int64, span partSpan) ([]claimed, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin hand-back: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after commit
	if _, err := tx.Exec(ctx, claimLockSQL); err != nil {
		return nil, fmt.Errorf("take the claim lock: %w", err)
	}
	lo, hi := span.bounds()
	res, err := tx.Query(ctx, demoteSQL, ids, jobID, r.cfg.BlockOnFailure, r.cfg.Ordering == OrderByEntity, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("hand back rows behind an earlier row: %w", err)
	}
	heads, err := pgx.CollectRows(res, scanClaimed)
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

// endedKeys are the ordering keys of rows whose outcome ended them, and
// the highest commit_seq the outcome transaction saw before it looked for
// their next rows.
type endedKeys struct {
	apps, assets, entities []string
	seenHigh               int64
}

// queueSuccessors queues, behind the recording of rows' outcomes in the
// same transaction, the claim of the next row of every key whose row
// ended: into job jobID when keep is set, else only found (the caller
// claims them into a new job). It returns the keys (nil when no row
// ended), which readSuccessors reads the answers for and which go to
// recheckSuccessors once the transaction has committed.
//
// Keys are taken from the attempts, whether or not their outcome applies
// (it does not when another run of the job recorded the row first):
// claiming a key's current head is right whoever ended the row before it.
func (r *Relay) queueSuccessors(batch *pgx.Batch, jobID int64, rows []*batchRow, keep bool) *endedKeys {
	var k endedKeys
	for _, b := range rows {
		if b.res.kind == rowDelivered || b.res.kind == rowFailed && !r.cfg.BlockOnFailure {
			k.apps = append(k.apps, b.appID)
			k.assets = append(k.assets, b.assetID)
			k.entities = append(k.entities, r.entityKey(b))
		}
	}
	if len(k.apps) == 0 {
		return nil
	}
	// The claim lock guards only the decision below, so it is taken here,
	// not at the start of the outcome transaction: the outcomes are
	// written without holding a hand-back back, and the query below, whose
	// snapshot is taken once the lock is held, sees every hand-back
	// committed before it.
	batch.Queue(seenHighSQL)
	if keep {
		batch.Queue(claimSuccessorsIntoSQL, k.apps, k.assets, k.entities, r.cfg.BlockOnFailure, jobID)
	} else {
		batch.Queue(successorSQL, k.apps, k.assets, k.entities, r.cfg.BlockOnFailure)
	}
	return &k
}

// readFound reads what queueSuccessors queued without keep: the next rows
// found, to be claimed into a new job.
func (r *Relay) readFound(br pgx.BatchResults, jobID int64, k *endedKeys) ([]claimed, error) {
	if err := readSeenHigh(br, k); err != nil {
		return nil, err
	}
	res, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("find the next rows of batch job %d's keys: %w", jobID, err)
	}
	heads, err := pgx.CollectRows(res, scanClaimed)
	if err != nil {
		return nil, fmt.Errorf("find the next rows of batch job %d's keys: %w", jobID, err)
	}
	return heads, nil
}

// readKept reads what queueSuccessors queued with keep: the next rows
// claimed into the job, ready to send.
func (r *Relay) readKept(br pgx.BatchResults, jobID int64, k *endedKeys) ([]*batchRow, error) {
	if err := readSeenHigh(br, k); err != nil {
		return nil, err
	}
	res, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("claim the next rows of batch job %d's keys: %w", jobID, err)
	}
	var rows []*batchRow
	var b batchRow
	_, err = pgx.ForEachRow(res, b.scanDest(), func() error {
		row := b
		row.head = true
		rows = append(rows, &row)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("claim the next rows of batch job %d's keys: %w", jobID, err)
	}
	return rows, nil
}

// readSeenHigh reads the answer of seenHighSQL into k.
func readSeenHigh(br pgx.BatchResults, k *endedKeys) error {
	var lock string
	if err := br.QueryRow().Scan(&lock, &k.seenHigh); err != nil {
		return fmt.Errorf("take the claim lock: %w", err)
	}
	return nil
}

// scanClaimed reads a row's id and partition_at.
func scanClaimed(row pgx.CollectableRow) (claimed, error) {
	var c claimed
	err := row.Scan(&c.id, &c.at)
	return c, err
}

// recheckSuccessors looks again, after the outcome transaction committed,
// for the next rows of its keys that were numbered while it ran (see
// claimLockSQL), and claims them into a new job. A failure is logged: the
// rows wait for the next rescan.
func (r *Relay) recheckSuccessors(ctx context.Context, k *endedKeys) {
	if k == nil {
		return
	}
	res, err := r.pool.Query(ctx, recheckSQL, k.apps, k.assets, k.entities, r.cfg.BlockOnFailure, k.seenHigh)
	if err == nil {
		var heads []claimed
		heads, err = pgx.CollectRows(res, scanClaimed)
		if err == nil && len(heads) > 0 {
			err = r.claimNew(ctx, heads)
		}
	}
	if err != nil && ctx.Err() == nil {
		r.log.Warn("claiming the next rows of ended rows' keys failed; they wait for the next rescan", zap.Error(err))
	}
}

func (r *Relay) entityKey(b *batchRow) string {
	if r.cfg.Ordering != OrderByEntity {
		return ""
	}
	return b.entityID
}
