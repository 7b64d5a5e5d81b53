package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/riverqueue/river"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mediaplatform/relay/internal/msgkey"
)

// rowColumns are what a batch job reads of each row it sends, in the
// order of batchRow.scanDest.
const rowColumns = `o.id, o.partition_at, o.created_at, o.resends, o.app_id, o.event_type, o.data::text, o.attempts,
       greatest(o.created_at, o.replayed_at), o.first_attempt_at,
       o.data ->> 'asset_id', o.data ->> 'entity_id'`

// headTest says row o is the head of its key: no earlier row of the key
// is undelivered (nor failed, under $4, BlockOnFailure); always true with
// ordering off ($3 false). $5: ordering by entity.
const headTest = `NOT $3::boolean OR NOT EXISTS (
           SELECT 1 FROM outbox e
            WHERE e.app_id = o.app_id AND (e.data ->> 'asset_id') = (o.data ->> 'asset_id')
              AND e.commit_seq < o.commit_seq AND e.partition_at <= ` + notAhead + `
              AND e.delivered_at IS NULL
              AND ($4::boolean OR num_nulls(e.failed_at) = 1)
              AND (NOT $5::boolean OR e.data ->> 'entity_id' = o.data ->> 'entity_id'))`

// headFlags are headTest's $3, $4 and $5 (and those of the admission
// reads that share them): ordering on, BlockOnFailure, ordering by entity.
func (r *Relay) headFlags() (ordered, blockOnFailure, byEntity bool) {
	return r.cfg.Ordering != OrderOff, r.cfg.BlockOnFailure, r.cfg.Ordering == OrderByEntity
}

// readSQL reads the rows a batch job still owns: its own job_id, neither
// delivered nor failed, and whether each is the head of its key
// (headTest): the claim checked it, and it is checked again here because
// a replay may have put an earlier row back since. $6 and $7 are the
// rows' partSpan.
const readSQL = `
SELECT ` + rowColumns + `,
       ` + headTest + `
  FROM outbox o
 WHERE o.id = ANY ($1::bigint[]) AND o.partition_at >= $6 AND o.partition_at <= $7 AND o.partition_at <= ` + notAhead + `
   AND o.job_id = $2 AND num_nulls(o.delivered_at, o.failed_at) = 2
 ORDER BY o.commit_seq`

// recordSQL writes a batch's outcomes in one statement. Only rows the job
// still owns are written (job_id, and neither delivered nor failed): a
// rescued rerun of the job racing this one, a replay or a resend meanwhile
// make it a no-op for that row, and the caller counts only what it returns.
// $10 and $11 are the rows' partSpan. Rows that stay in flight move to their retry job (u.next_job). Every
// indexed column is unchanged for them, so their update can stay on its
// page (HOT).
const recordSQL = `
UPDATE outbox AS o
   SET delivered_at     = CASE WHEN u.kind = 'delivered' THEN clock_timestamp() END,
       svix_message_id  = CASE WHEN u.kind = 'delivered' THEN nullif(u.msg_id, '') END,
       failed_at        = CASE WHEN u.kind = 'failed' THEN clock_timestamp() END,
       attempts         = o.attempts + CASE WHEN u.kind IN ('failed', 'retry') AND u.counted THEN 1 ELSE 0 END,
       last_error       = coalesce(nullif(u.error, ''), o.last_error),
       first_attempt_at = CASE WHEN u.sent THEN coalesce(o.first_attempt_at, u.sent_at) ELSE o.first_attempt_at END,
       job_id           = CASE WHEN u.next_job = 0 THEN o.job_id ELSE u.next_job END
  FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::boolean[], $7::timestamptz[], $8::bigint[])
       AS u (id, kind, msg_id, error, counted, sent, sent_at, next_job)
 WHERE o.id = ANY ($1::bigint[]) AND o.partition_at >= $10 AND o.partition_at <= $11 AND o.partition_at <= ` + notAhead + `
   AND o.id = u.id AND o.job_id = $9 AND num_nulls(o.delivered_at, o.failed_at) = 2
RETURNING o.id, o.attempts, extract(epoch FROM clock_timestamp() - o.created_at)::float8`

// handBackSQL returns a row of a job from before batches to be claimed
// again.
const handBackSQL = `
UPDATE outbox SET enqueued_at = NULL, job_id = NULL
 WHERE id = $1 AND job_id = $2 AND delivered_at IS NULL AND failed_at IS NULL`

// batchRow is one outbox row of a batch job.
type batchRow struct {
	id           int64
	at           pgtype.Timestamptz // partition_at
	created      time.Time
	resends      int
	appID        string
	eventType    string
	data         string
	attempts     int
	since        time.Time  // the later of insertion and the last replay: max age counts from here
	firstAttempt *time.Time // first send under the current key
	head         bool

	assetID, entityID string
	res               rowResult
}

func (b *batchRow) key() string { return msgkey.Format(b.id, b.created, b.resends) }

// scanDest are the fields a row is read into, in the order of the columns
// readSQL and claimSuccessorsIntoSQL return (readSQL adds the head test).
func (b *batchRow) scanDest() []any {
	return []any{&b.id, &b.at, &b.created, &b.resends, &b.appID, &b.eventType, &b.data, &b.attempts,
		&b.since, &b.firstAttempt, &b.assetID, &b.entityID}
}

// rowKind is what an attempt did to its row.
type rowKind string

const (
	rowDelivered rowKind = "delivered"
	rowFailed    rowKind = "failed" // given up until outbox_replay
	rowRetry     rowKind = "retry"  // stays in flight; tried again by a retry job
)

type rowResult struct {
	kind      rowKind
	msgID     string
	duplicate bool
	errText   string
	counted   bool          // the attempt counts in attempts
	sent      bool          // a request reached Svix (or may have)
	sentAt    time.Time     // when it was made
	delay     time.Duration // rowRetry: wait before the retry job runs
	err       error
	status    int
}

// batchWorker sends a batch of outbox rows to Svix and records their
// outcomes in one transaction.
type batchWorker struct {
	river.WorkerDefaults[BatchArgs]
	relay *Relay
}

// Timeout bounds one attempt of the batch: the rate-limit waits, the Svix
// calls and the bookkeeping.
func (w *batchWorker) Timeout(*river.Job[BatchArgs]) time.Duration {
	return w.relay.cfg.JobTimeout
}

// NextRetry applies when the outcomes could not be recorded (the job runs
// again and sends its rows under the same keys) and to jobs rescued after
// a crash: soon, capped.
func (w *batchWorker) NextRetry(job *river.Job[BatchArgs]) time.Time {
	return time.Now().Add(backoff(job.Attempt, w.relay.cfg.BackoffMin, w.relay.cfg.BackoffMax))
}

func (w *batchWorker) Work(ctx context.Context, job *river.Job[BatchArgs]) error {
	r := w.relay
	// Bookkeeping is not cut off by shutdown (the calls it records were
	// made) but is bounded by the job's own deadline, so River's rescuer,
	// which waits RescueAfter > JobTimeout, never runs the job while this
	// run still records.
	book := context.WithoutCancel(ctx)
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		book, cancel = context.WithDeadline(book, deadline)
		defer cancel()
	}
	// Sends stop early enough to leave the bookkeeping its share.
	sendCtx, cancelSend := context.WithTimeout(ctx, r.cfg.JobTimeout-r.bookkeepingReserve())
	defer cancelSend()

	ids, span := job.Args.IDs, job.Args.span()
	if job.Attempt > 1 {
		// A run after a crash or a failed recording: the job may also own
		// rows it was given while it ran (the next rows of its keys, rows
		// admission handed to it), which its args do not list, in
		// partitions outside its args' span.
		owned, err := r.ownedRows(ctx, job.ID)
		if err != nil {
			return err
		}
		ids, span = idsOf(owned), spanOf(owned)
	}
	start := time.Now()
	rows, err := r.readBatch(ctx, job, ids, span)
	if err != nil {
		return err
	}
	for len(rows) > 0 {
		var wg sync.WaitGroup
		for _, row := range rows {
			wg.Go(func() { row.res = r.attempt(sendCtx, job, row) })
		}
		wg.Wait()

		// While the job is young, it goes on with the next rows of its
		// keys itself (claimed and read by the recording): no job to
		// insert, fetch or complete per row of a key. Past a third of its
		// timeout it hands them to a new job.
		keep := time.Since(start) < r.cfg.JobTimeout/3 && !r.stopping.Load() && sendCtx.Err() == nil
		next, err := r.record(book, job, rows, keep)
		if err != nil {
			return err
		}
		if len(next) == 0 && keep {
			// Nothing left: wait a moment for admission to hand over
			// new rows (handoff.go), in any partition: the span is
			// theirs.
			h := r.linger(sendCtx, job.ID, start.Add(r.cfg.JobTimeout/3))
			if h.empty() {
				return nil
			}
			if next, err = r.takeHanded(ctx, job, h); err != nil {
				return err
			}
		}
		rows = next
	}
	return nil
}

// asWriter runs fn once the job holds one of the relay's writer slots
// (Config.Writers), and returns its error, or ctx's if ctx ends first.
func (r *Relay) asWriter(ctx context.Context, fn func() error) error {
	select {
	case r.writers <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait for a writer slot: %w", ctx.Err())
	}
	defer func() { <-r.writers }()
	return fn()
}

func idsOf(rows []claimed) []int64 {
	ids := make([]int64, len(rows))
	for i, c := range rows {
		ids[i] = c.id
	}
	return ids
}

// ownedRowsSQL finds every row a job owns, through the undelivered rows
// (only after a crash or a failed recording).
const ownedRowsSQL = `
SELECT id, partition_at FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL AND job_id = $1`

func (r *Relay) ownedRows(ctx context.Context, jobID int64) ([]claimed, error) {
	res, err := r.pool.Query(ctx, ownedRowsSQL, jobID)
	if err != nil {
		return nil, fmt.Errorf("find the rows of batch job %d: %w", jobID, err)
	}
	rows, err := pgx.CollectRows(res, scanClaimed)
	if err != nil {
		return nil, fmt.Errorf("find the rows of batch job %d: %w", jobID, err)
	}
	return rows, nil
}

func (r *Relay) bookkeepingReserve() time.Duration {
	return min(10*time.Second, r.cfg.JobTimeout/3)
}

// readBatch reads the rows job still owns among ids (whose partition_at
// span covers) and keeps the heads of their keys; the others go back to
// waiting. It holds a writer slot (asWriter) while it does.
func (r *Relay) readBatch(ctx context.Context, job *river.Job[BatchArgs], ids []int64, span partSpan) (rows []*batchRow, err error) {
	err = r.asWriter(ctx, func() error {
		rows, err = r.readRows(ctx, job, ids, span)
		return err
	})
	return rows, err
}

// readRows is readBatch once the slot is held.
func (r *Relay) readRows(ctx context.Context, job *river.Job[BatchArgs], ids []int64, span partSpan) ([]*batchRow, error) {
	ordered, block, byEntity := r.headFlags()
	lo, hi := span.bounds()
	res, err := r.pool.Query(ctx, readSQL, ids, job.ID, ordered, block, byEntity, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("read rows of batch job %d: %w", job.ID, err)
	}
	rows, err := scanBatchRows(res)
	if err != nil {
		return nil, fmt.Errorf("read rows of batch job %d: %w", job.ID, err)
	}
	return r.keepHeads(ctx, job, rows)
}

// scanBatchRows reads rows of rowColumns and headTest.
func scanBatchRows(res pgx.Rows) ([]*batchRow, error) {
	var rows []*batchRow
	var b batchRow
	_, err := pgx.ForEachRow(res, append(b.scanDest(), &b.head), func() error {
		row := b
		rows = append(rows, &row)
		return nil
	})
	return rows, err
}

// keepHeads returns the rows that are heads of their key and hands the
// others back to waiting (demote), but those whose predecessor ended
// meanwhile, which it reads and keeps.
func (r *Relay) keepHeads(ctx context.Context, job *river.Job[BatchArgs], rows []*batchRow) ([]*batchRow, error) {
	var heads []*batchRow
	var behind []claimed
	for _, row := range rows {
		if row.head {
			heads = append(heads, row)
		} else {
			behind = append(behind, claimed{row.id, row.at})
		}
	}
	if len(behind) == 0 {
		return heads, nil
	}
	after, err := r.demote(ctx, job.ID, idsOf(behind), spanOf(behind))
	if err != nil {
		return nil, err
	}
	if len(after) > 0 {
		more, err := r.readRows(ctx, job, idsOf(after), spanOf(after))
		if err != nil {
			return nil, err
		}
		heads = append(heads, more...)
	}
	return heads, nil
}

// attempt sends one row and classifies the answer.
func (r *Relay) attempt(ctx context.Context, job *river.Job[BatchArgs], b *batchRow) rowResult {
	if wait := r.pausedFor(); wait > 0 {
		// Svix asked everyone to slow down; do not spend a request.
		return rowResult{kind: rowRetry, delay: jitter(wait)}
	}
	// A row that has not started when the relay begins to stop is left for
	// the next relay at once: only sends already made may finish.
	if r.stopping.Load() {
		return rowResult{kind: rowRetry}
	}
	select {
	case r.sendSlots <- struct{}{}:
		defer func() { <-r.sendSlots }()
	case <-ctx.Done():
		return rowResult{kind: rowRetry}
	}
	if r.stopping.Load() {
		return rowResult{kind: rowRetry}
	}
	if r.limiter != nil {
		if err := r.waitForRate(ctx); err != nil {
			// The wait would outlast the attempt, or the relay is stopping:
			// not an attempt, try again soon.
			return rowResult{kind: rowRetry, delay: jitter(time.Second)}
		}
	}
	msg := Message{AppID: b.appID, EventType: b.eventType, Data: []byte(b.data), Key: b.key()}

	// Svix replays an idempotency key's answer for 12 hours only: a row
	// that may have reached Svix longer ago is looked up by its eventId
	// before it is sent again.
	if b.firstAttempt != nil && time.Since(*b.firstAttempt) > r.cfg.IdempotencyWindow {
		found, err := r.sender.Lookup(ctx, msg)
		switch {
		case err == nil && found.MessageID != "":
			return rowResult{kind: rowDelivered, msgID: found.MessageID, duplicate: true}
		case err != nil:
			r.log.Warn("could not look the message up before re-sending; sending under its key", zap.Int64("outbox_id", b.id), zap.Error(err))
		}
	}

	start := time.Now()
	sent, err := r.sender.Send(ctx, msg)
	r.metrics.observeRequest(err, time.Since(start))
	res := rowResult{sent: true, sentAt: start, err: err}
	var (
		rateLimited *RateLimitedError
		authErr     *AuthError
		permanent   *PermanentError
	)
	switch {
	case err == nil:
		r.authAccepted()
		res.kind, res.msgID, res.duplicate = rowDelivered, sent.MessageID, sent.Duplicate
		return res
	case ctx.Err() != nil && r.stopping.Load():
		// Cut off by shutdown: not a failed attempt. The row is left for
		// this relay's successor or a peer, at once.
		res.kind, res.delay = rowRetry, 0
		return res
	case errors.As(err, &rateLimited):
		wait := rateLimited.RetryAfter
		if wait <= 0 {
			wait = backoff(1, r.cfg.BackoffMin, r.cfg.BackoffMax)
		}
		r.pause(wait)
		res.kind, res.delay = rowRetry, wait
		return res
	case errors.As(err, &permanent):
		r.authAccepted()
		res.kind, res.errText, res.counted, res.status = rowFailed, err.Error(), true, permanent.Status
		return res
	}
	// A transient failure, or our token is rejected: count the attempt.
	res.kind, res.errText, res.counted = rowRetry, err.Error(), true
	if errors.As(err, &authErr) {
		r.authRejected()
	} else if age := time.Since(b.since); age > r.cfg.MaxAge {
		res.kind = rowFailed
		res.errText = fmt.Sprintf("gave up after %s (max age %s): %s", age.Round(time.Second), r.cfg.MaxAge, res.errText)
	}
	if res.kind == rowRetry {
		res.delay = backoff(b.attempts+1, r.cfg.BackoffMin, r.cfg.BackoffMax)
	}
	return res
}

// record writes the batch's outcomes, moves rows still in flight to retry
// jobs and claims the next row of every key whose row ended (into this job
// when keep is set, and returns them, read and ready to send; else into a
// new job): one transaction. River completes the job once Work returns. Once it
// has committed, the next rows of those keys numbered meanwhile are
// claimed too (recheckSuccessors).
//
// It holds a writer slot (asWriter) while it does.
func (r *Relay) record(ctx context.Context, job *river.Job[BatchArgs], rows []*batchRow, keep bool) (next []*batchRow, err error) {
	err = r.asWriter(ctx, func() error {
		var ended *endedKeys
		if next, ended, err = r.recordTx(ctx, job, rows, keep); err != nil {
			return err
		}
		r.recheckSuccessors(ctx, ended)
		return nil
	})
	return next, err
}

func (r *Relay) recordTx(ctx context.Context, job *river.Job[BatchArgs], rows []*batchRow, keep bool) (kept []*batchRow, ended *endedKeys, _ error) {
	retrying := false
	for _, b := range rows {
		retrying = retrying || b.res.kind == rowRetry
	}
	if !retrying && (keep || r.cfg.Ordering == OrderOff) {
		return r.recordInOneTrip(ctx, job, rows)
	}

	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("begin recording batch job %d: %w", job.ID, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after commit

	// Rows still in flight leave the batch for retry jobs of their own,
	// one per distinct delay class (rows that failed as often wait alike).
	nextJob := make(map[*batchRow]int64)
	groups := map[time.Duration][]*batchRow{}
	for _, b := range rows {
		if b.res.kind == rowRetry {
			d := b.res.delay.Round(100 * time.Millisecond)
			groups[d] = append(groups[d], b)
		}
	}
	if len(groups) > 0 {
		var params []river.InsertManyParams
		var order [][]*batchRow
		for d, g := range groups {
			part := make([]claimed, len(g))
			for i, b := range g {
				part[i] = claimed{b.id, b.at}
			}
			opts := batchInsertOpts(r.cfg.Queue)
			if d > 0 {
				opts.ScheduledAt = time.Now().Add(d)
			}
			params = append(params, river.InsertManyParams{Args: batchArgs(part), InsertOpts: opts})
			order = append(order, g)
		}
		results, err := r.client.InsertManyTx(ctx, tx, params)
		if err != nil {
			return nil, nil, fmt.Errorf("insert retry jobs of batch job %d: %w", job.ID, err)
		}
		for i, res := range results {
			for _, b := range order[i] {
				nextJob[b] = res.Job.ID
			}
		}
	}

	// The outcomes and, with ordering on, the claim of the next row of
	// each key whose row ended go in one round trip.
	batch := &pgx.Batch{}
	r.queueRecord(batch, job, rows, nextJob)
	if r.cfg.Ordering != OrderOff {
		ended = r.queueSuccessors(batch, job.ID, rows, keep)
	}
	br := tx.SendBatch(ctx, batch)
	done, err := r.readRecord(br, job)
	if err != nil {
		br.Close()
		return nil, nil, err
	}
	var heads []claimed
	switch {
	case ended != nil && keep:
		kept, err = r.readKept(br, job.ID, ended)
	case ended != nil:
		heads, err = r.readFound(br, job.ID, ended)
	}
	if err != nil {
		br.Close()
		return nil, nil, err
	}
	if err := br.Close(); err != nil {
		return nil, nil, fmt.Errorf("record outcomes of batch job %d: %w", job.ID, err)
	}
	if err := r.claim(ctx, tx, heads); err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, nil, fmt.Errorf("commit outcomes of batch job %d: %w", job.ID, err)
	}
	r.reportApplied(rows, done)
	return kept, ended, nil
}

// recordInOneTrip is recordTx when no row stays in flight and the next
// rows of the batch's keys stay with the job (or ordering is off): the
// transaction needs nothing from the relay between its statements, so
// BEGIN, the outcomes, the claim of the next rows and COMMIT reach the
// server as one batch, one round trip. A statement that fails leaves the
// rest unrun and the connection in its failed transaction, which the pool
// discards on release (nothing is written).
//
// The job is not completed here: River completes it when Work returns
// (a crash in between reruns it, and the rerun owns no rows).
func (r *Relay) recordInOneTrip(ctx context.Context, job *river.Job[BatchArgs], rows []*batchRow) (kept []*batchRow, ended *endedKeys, _ error) {
	batch := &pgx.Batch{}
	batch.Queue("BEGIN")
	r.queueRecord(batch, job, rows, nil)
	if r.cfg.Ordering != OrderOff {
		ended = r.queueSuccessors(batch, job.ID, rows, true)
	}
	batch.Queue("COMMIT")
	br := r.pool.SendBatch(ctx, batch)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, nil, fmt.Errorf("begin recording batch job %d: %w", job.ID, err)
	}
	done, err := r.readRecord(br, job)
	if err != nil {
		return nil, nil, err
	}
	if ended != nil {
		if kept, err = r.readKept(br, job.ID, ended); err != nil {
			return nil, nil, err
		}
	}
	tag, err := br.Exec()
	if err == nil && tag.String() != "COMMIT" {
		err = errors.New("the transaction was rolled back")
	}
	if err == nil {
		err = br.Close()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("commit outcomes of batch job %d: %w", job.ID, err)
	}
	r.reportApplied(rows, done)
	return kept, ended, nil
}

// applied is an outcome the recording wrote: the row's attempts since and
// how long after its creation it ended, in seconds.
type applied struct {
	attempts int
	lag      float64
}

// queueRecord queues the statement that writes rows' outcomes; nextJob
// names the retry job of each row that stays in flight.
func (r *Relay) queueRecord(batch *pgx.Batch, job *river.Job[BatchArgs], rows []*batchRow, nextJob map[*batchRow]int64) {
	n := len(rows)
	ids, kinds, msgIDs, errs := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
	counted, sent, sentAt, next := make([]bool, n), make([]bool, n), make([]time.Time, n), make([]int64, n)
	var span partSpan
	for i, b := range rows {
		span.add(b.at)
		ids[i], kinds[i], msgIDs[i], errs[i] = b.id, string(b.res.kind), b.res.msgID, b.res.errText
		counted[i], sent[i], sentAt[i], next[i] = b.res.counted, b.res.sent, b.res.sentAt, nextJob[b]
	}
	lo, hi := span.bounds()
	batch.Queue(recordSQL, ids, kinds, msgIDs, errs, counted, sent, sentAt, next, job.ID, lo, hi)
}

// readRecord reads what queueRecord queued: the outcomes applied, by row
// id.
func (r *Relay) readRecord(br pgx.BatchResults, job *river.Job[BatchArgs]) (map[int64]applied, error) {
	res, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("record outcomes of batch job %d: %w", job.ID, err)
	}
	done := make(map[int64]applied)
	var id int64
	var a applied
	if _, err := pgx.ForEachRow(res, []any{&id, &a.attempts, &a.lag}, func() error {
		done[id] = a
		return nil
	}); err != nil {
		return nil, fmt.Errorf("record outcomes of batch job %d: %w", job.ID, err)
	}
	return done, nil
}

// reportApplied counts and logs the outcomes that were applied, once
// their transaction has committed.
func (r *Relay) reportApplied(rows []*batchRow, done map[int64]applied) {
	for _, b := range rows {
		if a, ok := done[b.id]; ok {
			r.report(b, a.attempts, a.lag)
		}
	}
}

// report logs and counts one applied outcome.
func (r *Relay) report(b *batchRow, attempts int, lagSecs float64) {
	// The row's fields go with each entry, not through Logger.With, which
	// would encode them into a new logger for every row.
	row := [3]zap.Field{zap.Int64("outbox_id", b.id), zap.String("app_id", b.appID), zap.String("event_type", b.eventType)}
	log := func(level zapcore.Level, msg string, fields ...zap.Field) {
		if ce := r.log.Check(level, msg); ce != nil {
			ce.Write(append(row[:], fields...)...)
		}
	}
	res := b.res
	var authErr *AuthError
	var rateLimited *RateLimitedError
	switch {
	case res.kind == rowDelivered:
		r.metrics.delivered(b.eventType, res.duplicate, lagSecs)
		log(zapcore.InfoLevel, "delivered", zap.String("svix_msg_id", res.msgID), zap.Bool("duplicate", res.duplicate), zap.Int("attempt", attempts+1))
	case res.kind == rowFailed:
		r.metrics.outcome(b.eventType, "failed")
		if r.cfg.Ordering != OrderOff && !r.cfg.BlockOnFailure {
			r.metrics.orderingSkipped.Inc()
		}
		log(zapcore.ErrorLevel, "row failed until replayed", zap.Error(res.err), zap.Int("status", res.status), zap.Int("attempt", attempts))
	case errors.As(res.err, &rateLimited):
		r.metrics.outcome(b.eventType, "rate_limited")
		log(zapcore.WarnLevel, "svix rate limited the send; waiting", zap.Duration("retry_after", res.delay))
	case errors.As(res.err, &authErr):
		r.metrics.outcome(b.eventType, "retry")
		log(zapcore.ErrorLevel, "svix rejected the relay's token: check SVIX_AUTH_TOKEN; rows are kept and retried", zap.Error(res.err))
	case res.counted:
		r.metrics.outcome(b.eventType, "retry")
		log(zapcore.WarnLevel, "send failed; will retry", zap.Error(res.err), zap.Int("attempt", attempts), zap.Duration("retry_in", res.delay))
	}
}

// legacyWorker runs jobs made by relays from before batches: it hands the
// row back, to be claimed into a batch in its key's order.
type legacyWorker struct {
	river.WorkerDefaults[DeliverArgs]
	relay *Relay
}

func (w *legacyWorker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	if _, err := w.relay.pool.Exec(ctx, handBackSQL, job.Args.OutboxID, job.ID); err != nil {
		return fmt.Errorf("hand back outbox row %d of an old job: %w", job.Args.OutboxID, err)
	}
	w.relay.feeder.pokeRescan()
	return nil
}
