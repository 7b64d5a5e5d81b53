package dispatch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Ordering modes: which rows must reach Svix in commit order.
const (
	// OrderByAsset orders the rows of one (app_id, data.asset_id): an
	// asset's own events and the cut and render events of its cuts and
	// renders.
	OrderByAsset = "asset"
	// OrderByEntity orders the rows of one (app_id, data.entity_id) only.
	// Rows are numbered per asset, so an entity must belong to one asset.
	OrderByEntity = "entity"
	// OrderOff sends rows as soon as they are claimed.
	OrderOff = "off"
)

// earlierSQL finds an earlier row of the same key that is not delivered
// (and, unless failures block, not failed). The outbox_order_idx index
// makes it one index probe.
const earlierSQL = `
SELECT EXISTS (
    SELECT 1 FROM outbox
     WHERE app_id = $1 AND (data ->> 'asset_id') = $2 AND order_seq < $3
       AND delivered_at IS NULL
       AND ($4 OR failed_at IS NULL)
       AND ($5 = '' OR data ->> 'entity_id' = $5))`

// nextManySQL finds, for each row that just ended, the job of the next
// row of its key still waiting: one query per batch of recorded outcomes.
const nextManySQL = `
SELECT u.id, n.job_id
  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[]) AS u (id, app_id, asset_id, order_seq, entity_id)
  CROSS JOIN LATERAL (
        SELECT job_id FROM outbox
         WHERE app_id = u.app_id AND (data ->> 'asset_id') = u.asset_id AND order_seq > u.order_seq
           AND delivered_at IS NULL AND failed_at IS NULL AND job_id IS NOT NULL
           AND (u.entity_id = '' OR data ->> 'entity_id' = u.entity_id)
         ORDER BY order_seq
         LIMIT 1) AS n`

// orderer holds a row back while an earlier row of its key is undelivered,
// and wakes the next row of a key when a row ends.
type orderer struct {
	pool           *pgxpool.Pool
	byEntity       bool
	blockOnFailure bool
	// recheck is the longest a held-back row sleeps before it looks again,
	// in case the wake-up from its predecessor was missed.
	recheck time.Duration
}

func (o *orderer) entity(a DeliverArgs) string {
	if o.byEntity {
		return a.EntityID
	}
	return ""
}

// wait returns how long to snooze a, or 0 to send it now. The first
// rechecks come soon (the row before is usually being sent, and its wake-up
// is lost if it lands before this job's snooze is recorded); later ones
// back off to recheck, so rows held behind a failing row cost little.
func (o *orderer) wait(ctx context.Context, a DeliverArgs, snoozed int) (time.Duration, error) {
	if a.OrderSeq == 0 { // written before ordering existed
		return 0, nil
	}
	var earlier bool
	if err := o.pool.QueryRow(ctx, earlierSQL, a.AppID, a.AssetID, a.OrderSeq, o.blockOnFailure, o.entity(a)).Scan(&earlier); err != nil {
		return 0, fmt.Errorf("look for an earlier row of the key: %w", err)
	}
	if !earlier {
		return 0, nil
	}
	d := 250 * time.Millisecond
	for i := 0; i < snoozed && d < o.recheck; i++ {
		d *= 2
	}
	d = min(d, o.recheck)
	return d + rand.N(d/2+1), nil
}

// nextMany returns, by outbox id, the job of the row waiting after each of
// rows (rows with no such row are absent).
func (o *orderer) nextMany(ctx context.Context, rows []DeliverArgs) (map[int64]int64, error) {
	n := len(rows)
	ids, apps, assets, seqs, entities := make([]int64, 0, n), make([]string, 0, n), make([]string, 0, n), make([]int64, 0, n), make([]string, 0, n)
	for _, a := range rows {
		if a.OrderSeq == 0 {
			continue
		}
		ids, apps, assets, seqs, entities = append(ids, a.OutboxID), append(apps, a.AppID), append(assets, a.AssetID),
			append(seqs, a.OrderSeq), append(entities, o.entity(a))
	}
	if len(ids) == 0 {
		return nil, nil
	}
	res, err := o.pool.Query(ctx, nextManySQL, ids, apps, assets, seqs, entities)
	if err != nil {
		return nil, fmt.Errorf("look for the next rows of the keys: %w", err)
	}
	next := make(map[int64]int64)
	var id, jobID int64
	_, err = pgx.ForEachRow(res, []any{&id, &jobID}, func() error {
		next[id] = jobID
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look for the next rows of the keys: %w", err)
	}
	return next, nil
}
