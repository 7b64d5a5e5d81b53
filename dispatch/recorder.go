package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// outcomeKind is what a delivery attempt did to its row.
type outcomeKind string

const (
	outcomeDelivered outcomeKind = "delivered"
	outcomeRetry     outcomeKind = "retry"  // a failed attempt; the row stays in flight
	outcomeFailed    outcomeKind = "failed" // given up until outbox_replay
)

type outcome struct {
	id      int64
	resends int
	kind    outcomeKind
	msgID   string
	errText string
	// next, when set, asks for the job of the row waiting after this one
	// in its ordering key, looked up for the whole batch in one query.
	next *DeliverArgs

	done chan outcomeResult
}

type outcomeResult struct {
	applied  bool // false when the row had already reached an end state, or was resent since
	attempts int
	lagSecs  float64 // created_at to now, for delivered rows
	err      error

	nextJobID int64 // the job of the row waiting after this one (outcome.next), or 0
	nextErr   error // the lookup of nextJobID failed; the outcome itself is recorded
}

// recordSQL writes a batch of outcomes in one statement. The guard skips
// rows that already ended (a job re-run after a crash) and rows resent since
// the job was made (a stale generation).
const recordSQL = `
UPDATE outbox AS o
   SET delivered_at    = CASE WHEN u.kind = 'delivered' THEN clock_timestamp() END,
       svix_message_id = CASE WHEN u.kind = 'delivered' THEN nullif(u.msg_id, '') END,
       failed_at       = CASE WHEN u.kind = 'failed' THEN clock_timestamp() END,
       attempts        = o.attempts + CASE WHEN u.kind = 'delivered' THEN 0 ELSE 1 END,
       last_error      = coalesce(nullif(u.error, ''), o.last_error)
  FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[]) AS u (id, resends, kind, msg_id, error)
 WHERE o.id = u.id
   AND o.resends = u.resends
   AND o.delivered_at IS NULL
   AND o.failed_at IS NULL
RETURNING o.id, o.attempts, extract(epoch FROM clock_timestamp() - o.created_at)::float8`

// recorder writes outcomes to the outbox in batches: a worker hands its
// outcome over and waits until the batch holding it has committed, so an
// outcome is durable before the worker's job completes, while many workers
// share one round trip. A batch is whatever is waiting when the previous
// one finishes, so a lone outcome is written at once.
type recorder struct {
	pool     *pgxpool.Pool
	in       chan *outcome
	maxBatch int
	order    *orderer // looks up outcome.next; nil when ordering is off
}

func newRecorder(pool *pgxpool.Pool, maxBatch int, order *orderer) *recorder {
	return &recorder{pool: pool, in: make(chan *outcome, maxBatch), maxBatch: maxBatch, order: order}
}

var errRecorderStopped = errors.New("outcome recorder stopped")

// record writes o and returns the row's attempts after it.
func (r *recorder) record(ctx context.Context, o outcome) (outcomeResult, error) {
	o.done = make(chan outcomeResult, 1)
	select {
	case r.in <- &o:
	case <-ctx.Done():
		return outcomeResult{}, fmt.Errorf("queue outcome of outbox row %d: %w", o.id, ctx.Err())
	}
	select {
	case res := <-o.done:
		return res, res.err
	case <-ctx.Done():
		return outcomeResult{}, fmt.Errorf("wait for outcome of outbox row %d: %w", o.id, ctx.Err())
	}
}

// run writes batches until ctx is done; outcomes still queued then fail.
func (r *recorder) run(ctx context.Context) {
	batch := make([]*outcome, 0, r.maxBatch)
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case o := <-r.in:
					o.done <- outcomeResult{err: errRecorderStopped}
				default:
					return
				}
			}
		case o := <-r.in:
			batch = append(batch[:0], o)
		fill:
			for len(batch) < r.maxBatch {
				select {
				case o := <-r.in:
					batch = append(batch, o)
				default:
					break fill
				}
			}
			r.flush(ctx, batch)
		}
	}
}

func (r *recorder) flush(ctx context.Context, batch []*outcome) {
	n := len(batch)
	ids := make([]int64, n)
	resends := make([]int32, n)
	kinds := make([]string, n)
	msgIDs := make([]string, n)
	errs := make([]string, n)
	for i, o := range batch {
		ids[i], resends[i], kinds[i], msgIDs[i], errs[i] = o.id, int32(o.resends), string(o.kind), o.msgID, o.errText
	}
	// Bookkeeping outlives a cancelled caller: the Svix call it records
	// already happened.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()

	results := make(map[int64]outcomeResult, n)
	rows, err := r.pool.Query(ctx, recordSQL, ids, resends, kinds, msgIDs, errs)
	if err == nil {
		for rows.Next() {
			var id int64
			var res outcomeResult
			if err = rows.Scan(&id, &res.attempts, &res.lagSecs); err != nil {
				break
			}
			res.applied = true
			results[id] = res
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		for _, o := range batch {
			o.done <- outcomeResult{err: fmt.Errorf("record outcomes: %w", err)}
		}
		return
	}

	// The rows waiting behind the rows that ended, for the whole batch at
	// once, after the outcomes committed (as a worker asking alone would).
	var next map[int64]int64
	var nextErr error
	if r.order != nil {
		var wake []DeliverArgs
		for _, o := range batch {
			if o.next != nil {
				wake = append(wake, *o.next)
			}
		}
		if len(wake) > 0 {
			next, nextErr = r.order.nextMany(ctx, wake)
		}
	}
	for _, o := range batch {
		res := results[o.id]
		if o.next != nil {
			res.nextJobID, res.nextErr = next[o.id], nextErr
		}
		o.done <- res
	}
}
