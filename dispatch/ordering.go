package dispatch

import (
	"context"
	"errors"
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

// nextSQL finds the job of the next row waiting on a row of a key.
const nextSQL = `
SELECT job_id FROM outbox
 WHERE app_id = $1 AND (data ->> 'asset_id') = $2 AND order_seq > $3
   AND delivered_at IS NULL AND failed_at IS NULL AND job_id IS NOT NULL
   AND ($4 = '' OR data ->> 'entity_id' = $4)
 ORDER BY order_seq
 LIMIT 1`

// orderer holds a row back while an earlier row of its key is undelivered,
// and wakes the next row of a key when a row ends.
type orderer struct {
	pool           *pgxpool.Pool
	byEntity       bool
	blockOnFailure bool
	// recheck is how long a held-back row sleeps before it looks again,
	// in case the wake-up from its predecessor was missed.
	recheck time.Duration
}

func (o *orderer) entity(a DeliverArgs) string {
	if o.byEntity {
		return a.EntityID
	}
	return ""
}

// wait returns how long to snooze a, or 0 to send it now.
func (o *orderer) wait(ctx context.Context, a DeliverArgs) (time.Duration, error) {
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
	return o.recheck + rand.N(o.recheck/2+1), nil
}

// next returns the job id of the row waiting after a, or 0.
func (o *orderer) next(ctx context.Context, a DeliverArgs) (int64, error) {
	if a.OrderSeq == 0 {
		return 0, nil
	}
	var jobID int64
	err := o.pool.QueryRow(ctx, nextSQL, a.AppID, a.AssetID, a.OrderSeq, o.entity(a)).Scan(&jobID)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, nil
		}
		return 0, fmt.Errorf("look for the next row of the key: %w", err)
	}
	return jobID, nil
}
