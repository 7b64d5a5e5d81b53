package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"go.uber.org/zap"
)

// claimSQL locks pending rows by state, never by "id above the last one
// seen": ids commit out of order, and a lower id committed late is pending
// like any other. SKIP LOCKED lets several relays claim side by side. The
// rows are marked enqueued by setClaimedSQL once their jobs exist, in the
// same transaction.
//
// The last column says that no earlier row of the row's ordering key is
// undelivered (orderer.wait's check, same predicate). On its job's first
// run such a row is sent without asking again, which saves a query per row
// in the common case of one row of a key in flight; its retries ask again,
// so an earlier row replayed while it backs off goes first. Only a replay
// landing between the claim and the first send (milliseconds) can let the
// later row go first, as when the earlier row had failed.
// $2 is false when ordering is off, $3 is BlockOnFailure, $4 orders by
// entity.
const claimSQL = `
SELECT o.id, o.created_at, o.resends, o.app_id, o.event_type, o.data,
       coalesce(o.order_seq, 0), o.data ->> 'asset_id', o.data ->> 'entity_id',
       $2::boolean AND o.order_seq IS NOT NULL AND NOT EXISTS (
           SELECT 1 FROM outbox e
            WHERE e.app_id = o.app_id AND (e.data ->> 'asset_id') = (o.data ->> 'asset_id')
              AND e.order_seq < o.order_seq
              AND e.delivered_at IS NULL
              AND ($3::boolean OR e.failed_at IS NULL)
              AND (NOT $4::boolean OR e.data ->> 'entity_id' = o.data ->> 'entity_id'))
  FROM outbox o
 WHERE o.enqueued_at IS NULL AND o.delivered_at IS NULL AND o.failed_at IS NULL
 ORDER BY o.id
 LIMIT $1
   FOR UPDATE OF o SKIP LOCKED`

// setClaimedSQL marks claimed rows enqueued with their jobs: one row
// version per claim.
const setClaimedSQL = `
UPDATE outbox AS o SET enqueued_at = clock_timestamp(), job_id = u.job_id
  FROM unnest($1::bigint[], $2::bigint[]) AS u (id, job_id)
 WHERE o.id = u.id`

// staleSQL hands back rows whose job is gone (deleted by hand, or lost
// some other way): enqueued long ago, neither delivered nor failed, and no
// live River job. The feeder then claims them like new rows.
const staleSQL = `
WITH stale AS (
    SELECT o.id FROM outbox o
     WHERE o.delivered_at IS NULL AND o.failed_at IS NULL
       AND o.enqueued_at < clock_timestamp() - make_interval(secs => $1)
       AND NOT EXISTS (
             SELECT 1 FROM river_job j
              WHERE j.id = o.job_id
                AND j.state IN ('available', 'pending', 'retryable', 'running', 'scheduled'))
     ORDER BY o.created_at
     LIMIT $2
       FOR UPDATE OF o SKIP LOCKED
)
UPDATE outbox AS o SET enqueued_at = NULL
  FROM stale
 WHERE o.id = stale.id
RETURNING o.id`

// feeder moves pending outbox rows into River: woken by the outbox's
// NOTIFY (unless PollOnly) and by a poll.
type feeder struct {
	relay *Relay
	wake  chan struct{}
}

func (f *feeder) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *feeder) run(ctx context.Context) {
	r := f.relay
	f.wake = make(chan struct{}, 1)
	done := make(chan struct{})
	if !r.cfg.PollOnly {
		go func() {
			defer close(done)
			f.listen(ctx)
		}()
	} else {
		close(done)
	}
	defer func() { <-done }()

	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	sweep := time.NewTicker(min(r.cfg.StaleAfter/2, time.Minute))
	defer sweep.Stop()

	f.drain(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
			f.drain(ctx)
		case <-poll.C:
			f.drain(ctx)
		case <-sweep.C:
			f.sweep(ctx)
		}
	}
}

// listen wakes the feeder on each notification, and after every
// (re)connect, since rows may have been written while it was away.
func (f *feeder) listen(ctx context.Context) {
	r := f.relay
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
		},
		LogError: func(ctx context.Context, err error) {
			if ctx.Err() == nil {
				r.log.Warn("outbox listener lost its connection; polling until it is back", zap.Error(err))
			}
		},
		ReconnectDelay: time.Second,
	}
	l.Handle("outbox", listenHandler{f})
	if err := l.Listen(ctx); err != nil && ctx.Err() == nil {
		r.log.Error("outbox listener stopped", zap.Error(err))
	}
}

type listenHandler struct{ f *feeder }

func (h listenHandler) HandleNotification(context.Context, *pgconn.Notification, *pgx.Conn) error {
	h.f.poke()
	return nil
}

func (h listenHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.f.poke()
	return nil
}

// drain claims batches until a short one.
func (f *feeder) drain(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := f.claim(ctx)
		if err != nil {
			if ctx.Err() == nil {
				f.relay.log.Warn("claim outbox rows failed; retrying at the next poll", zap.Error(err))
			}
			return
		}
		if n < f.relay.cfg.ClaimBatch {
			return
		}
	}
}

// claim hands one batch of pending rows to River in one transaction: the
// rows are marked enqueued if and only if their jobs exist. A row whose
// job is still running stays pending.
func (f *feeder) claim(ctx context.Context) (int, error) {
	r := f.relay
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin claim: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after commit

	var ordered, byEntity bool
	if r.ordering != nil {
		ordered, byEntity = true, r.ordering.byEntity
	}
	rows, err := tx.Query(ctx, claimSQL, r.cfg.ClaimBatch, ordered, r.cfg.BlockOnFailure, byEntity)
	if err != nil {
		return 0, fmt.Errorf("claim outbox rows: %w", err)
	}
	var params []river.InsertManyParams
	var a DeliverArgs
	var created time.Time
	_, err = pgx.ForEachRow(rows, []any{&a.OutboxID, &created, &a.Resends, &a.AppID, &a.EventType, &a.Data,
		&a.OrderSeq, &a.AssetID, &a.EntityID, &a.HeadOfKey}, func() error {
		a.CreatedUS = created.UnixMicro()
		args := a
		args.Data = append([]byte(nil), a.Data...)
		params = append(params, river.InsertManyParams{Args: args, InsertOpts: insertOpts(r.cfg.Queue)})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("claim outbox rows: %w", err)
	}
	if len(params) == 0 {
		return 0, nil
	}

	results, err := r.client.InsertManyTx(ctx, tx, params)
	if err != nil {
		return 0, fmt.Errorf("insert delivery jobs: %w", err)
	}
	ids := make([]int64, 0, len(results))
	jobIDs := make([]int64, 0, len(results))
	for i, res := range results {
		id := params[i].Args.(DeliverArgs).OutboxID
		if res.UniqueSkippedAsDuplicate {
			if res.Job.State == rivertype.JobStateRunning {
				// Its job is finishing (River records outcomes a moment
				// after they happen): leave the row pending and look again
				// at the next poll, when that job has ended.
				continue
			}
			// The row already has a job waiting (it was replayed during a
			// retry backoff): run that job now.
			if _, err := r.client.JobRetryTx(ctx, tx, res.Job.ID); err != nil {
				return 0, fmt.Errorf("retry job %d of outbox row %d: %w", res.Job.ID, id, err)
			}
		}
		ids = append(ids, id)
		jobIDs = append(jobIDs, res.Job.ID)
	}
	if _, err := tx.Exec(ctx, setClaimedSQL, ids, jobIDs); err != nil {
		return 0, fmt.Errorf("mark claimed rows enqueued: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("commit claim: %w", err)
	}
	return len(ids), nil
}

// sweep hands rows whose job vanished back to the feeder.
func (f *feeder) sweep(ctx context.Context) {
	r := f.relay
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rows, err := r.pool.Query(ctx, staleSQL, r.cfg.StaleAfter.Seconds(), 1000)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("sweep for rows without a job failed", zap.Error(err))
		}
		return
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil && !errors.Is(err, context.Canceled) {
		r.log.Warn("sweep for rows without a job failed", zap.Error(err))
		return
	}
	for _, id := range ids {
		r.log.Warn("row had no live job; handing it over again", zap.Int64("outbox_id", id))
	}
	if len(ids) > 0 {
		f.poke()
	}
}
