package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgxlisten"
	"github.com/riverqueue/river"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/nosort"
	"github.com/mediaplatform/relay/internal/sequencer"
)

// Who may hand a row to a job, and when.
//
// A row is claimed only once it has a commit_seq (its place in commit
// order, set by the sequencer) and only while it is the head of its key:
// no row of the key with a lower commit_seq is undelivered (nor failed,
// under BlockOnFailure). Two paths claim rows:
//
//   - admission (the feeder): rows numbered since it last looked, in
//     commit_seq order, claimed if they are heads; and
//   - succession (a batch job, in the transaction that records its
//     outcomes): the new head of each key whose row ended.
//
// Admission decides "not a head: its predecessor will claim it", and
// succession decides "the next row is not numbered yet: admission will
// claim it". Admission takes no lock and waits for no outcome; succession
// closes the gap after the fact. An outcome transaction reads the highest
// commit_seq it can see before it looks for successors; once it has
// committed, if the sequencer has handed out higher numbers since
// (outbox_commit_seq moves before a step commits), it looks at its keys
// again in a fresh snapshot (recheckSuccessors). A row numbered after the
// first look is either numbered before the second one, which then sees
// it, or its numbering commits after the outcome did, so admission (which
// reads only committed numbers) sees its predecessor ended and claims it.
//
// A hand-back (a row behind an earlier undelivered row, put back after
// it was claimed) decides "that earlier row's outcome will claim it" and
// must be seen by that outcome's look: hand-backs hold claimLock
// exclusively and succession holds it shared, so once a hand-back holds
// the lock, every outcome transaction has committed or has not looked
// yet. The lock is a transaction-level advisory lock: nothing on disk, and
// producers and admission never take it. Hand-backs are rare (a replay).
const claimLockSQL = `SELECT pg_advisory_xact_lock(hashtextextended('relay.outbox_claim', 'outbox'::regclass::oid::bigint))`

// Plans here must not depend on planner statistics: a table that grew from
// small to large during an outage has stale ones. Row state is therefore
// tested with num_nulls(...) in the hot queries, which the planner cannot
// match to outbox_undelivered_idx's predicate: with stale statistics that
// small-looking partial index would otherwise be scanned whole (in place of
// the primary key or outbox_key_idx) for every row. Each hot query is a
// primary-key lookup, a commit_seq range with a LIMIT, or one probe of
// outbox_key_idx per key.

// admitSQL reads rows numbered after $1, in commit order, through the
// unique commit_seq index (a range scan with a small LIMIT, bounded above
// by sequencer.NumberedThroughSQL: the plan does not depend on planner
// statistics), and says which are heads of their key, with one probe of
// outbox_key_idx each. commit_seq numbers become visible in order (the
// sequencer's steps are serialized), so a reader that has seen number n
// has seen every number below it: the watermark never skips a row.
// $3: ordering on; $4: BlockOnFailure; $5: ordering by entity.
const admitSQL = `
SELECT c.id, c.commit_seq, c.partition_at,
       num_nulls(c.enqueued_at, c.delivered_at, c.failed_at) = 3 AND (NOT $3::boolean OR NOT EXISTS (
           SELECT 1 FROM outbox e
            WHERE e.app_id = c.app_id AND (e.data ->> 'asset_id') = (c.data ->> 'asset_id')
              AND e.commit_seq < c.commit_seq AND e.partition_at <= ` + notAhead + `
              AND e.delivered_at IS NULL
              AND ($4::boolean OR num_nulls(e.failed_at) = 1)
              AND (NOT $5::boolean OR e.data ->> 'entity_id' = c.data ->> 'entity_id'))) AS head
  FROM (SELECT o.id, o.commit_seq, o.partition_at, o.app_id, o.data, o.enqueued_at, o.delivered_at, o.failed_at
          FROM outbox o
         WHERE o.commit_seq > $1 AND o.commit_seq <= ` + sequencer.NumberedThroughSQL + `
           AND o.partition_at <= ` + notAhead + `
         ORDER BY o.commit_seq
         LIMIT $2) c`

// admitIntoSQL is admitSQL claiming up to $6 of the heads it finds into
// the waiting batch job $7 (handoff.go) in the same statement, guarded as
// setClaimedSQL is. It returns the rows claimed, with what the job reads
// of them (claimed true, then rowColumns: each is the head of its key as
// of this statement, which found it as such), and every row admission
// looked at (claimed false: id, partition_at and, after placeholders,
// commit_seq and head), so the watermark moves as admitSQL's does and the
// heads left over go to new jobs.
const admitIntoSQL = `
WITH a AS MATERIALIZED (` + admitSQL + `
), h AS (
    SELECT id, partition_at FROM a WHERE a.head LIMIT $6
), u (id, partition_at, created_at, resends, app_id, event_type, data, attempts, since, first_attempt_at, asset_id, entity_id) AS (
    UPDATE outbox AS o SET enqueued_at = clock_timestamp(), job_id = $7
      FROM h
     WHERE o.id = h.id AND o.partition_at = h.partition_at AND o.partition_at <= ` + notAhead + `
       AND o.enqueued_at IS NULL AND num_nulls(o.delivered_at, o.failed_at) = 2
    RETURNING ` + rowColumns + `
)
SELECT true, u.*, 0::bigint, true FROM u
UNION ALL
SELECT false, a.id, a.partition_at, 'epoch'::timestamptz, 0, '', '', '', 0, 'epoch'::timestamptz, NULL::timestamptz, '', '',
       a.commit_seq, a.head
  FROM a`

// rescanSQL is admitSQL over every waiting row, whatever its number: rows
// handed back (a replay, a job that vanished) sit below the watermark. It
// pages through the undelivered rows by created_at (outbox_undelivered_idx;
// $2 are the ids already seen at the page boundary's timestamp); it runs at
// start, after a replay or a sweep, and every RescanInterval.
const rescanSQL = `
SELECT c.id, c.created_at, c.partition_at,
       c.enqueued_at IS NULL AND c.commit_seq IS NOT NULL AND (NOT $4::boolean OR NOT EXISTS (
           SELECT 1 FROM outbox e
            WHERE e.app_id = c.app_id AND (e.data ->> 'asset_id') = (c.data ->> 'asset_id')
              AND e.commit_seq < c.commit_seq AND e.partition_at <= ` + notAhead + `
              AND e.delivered_at IS NULL
              AND ($5::boolean OR num_nulls(e.failed_at) = 1)
              AND (NOT $6::boolean OR e.data ->> 'entity_id' = c.data ->> 'entity_id')))
  FROM (SELECT o.id, o.created_at, o.commit_seq, o.partition_at, o.app_id, o.data, o.enqueued_at
          FROM outbox o
         WHERE o.delivered_at IS NULL AND o.failed_at IS NULL
           AND o.created_at >= $1 AND NOT (o.id = ANY (coalesce($2::bigint[], '{}')))
         ORDER BY o.created_at
         LIMIT $3) c`

// setClaimedSQL hands rows to their jobs. The id = ANY qual keeps the
// outbox side a primary-key lookup whatever the planner thinks of unnest's
// size (without it, a generic plan may scan the outbox once per row), and
// $3 and $4 (the rows' partSpan) prune the partitions that hold none of
// them. The guard keeps a row that
// another claim took meanwhile with that claim. The row's indexed columns
// do not change, so the new version can stay on its page (HOT).
const setClaimedSQL = `
UPDATE outbox AS o SET enqueued_at = clock_timestamp(), job_id = u.job_id
  FROM unnest($1::bigint[], $2::bigint[]) AS u (id, job_id)
 WHERE o.id = ANY ($1::bigint[]) AND o.partition_at >= $3 AND o.partition_at <= $4 AND o.partition_at <= ` + notAhead + `
   AND o.id = u.id AND o.enqueued_at IS NULL AND num_nulls(o.delivered_at, o.failed_at) = 2`

// staleSQL hands back rows whose job is gone (deleted by hand, or lost
// some other way): enqueued long ago, neither delivered nor failed, and no
// live River job. A rescan then claims them like new rows.
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
UPDATE outbox AS o SET enqueued_at = NULL, job_id = NULL
  FROM stale
 WHERE o.id = stale.id
RETURNING o.id`

// feeder claims rows into batch jobs: woken by the sequencer (rows were
// numbered), by the outbox's notifications and by a poll.
type feeder struct {
	relay  *Relay
	wake   chan struct{}
	rescan chan struct{}
	// watermark is the highest commit_seq admission has looked at.
	watermark int64
}

func newFeeder(r *Relay) *feeder {
	return &feeder{relay: r, wake: make(chan struct{}, 1), rescan: make(chan struct{}, 1)}
}

func (f *feeder) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *feeder) pokeRescan() {
	select {
	case f.rescan <- struct{}{}:
	default:
	}
}

func (f *feeder) run(ctx context.Context) {
	r := f.relay
	poll := time.NewTicker(r.cfg.PollInterval)
	defer poll.Stop()
	rescan := time.NewTicker(r.cfg.RescanInterval)
	defer rescan.Stop()
	sweep := time.NewTicker(min(r.cfg.StaleAfter/2, time.Minute))
	defer sweep.Stop()

	f.fullRescan(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
			f.drain(ctx)
		case <-poll.C:
			f.drain(ctx)
		case <-f.rescan:
			f.fullRescan(ctx)
		case <-rescan.C:
			f.fullRescan(ctx)
		case <-sweep.C:
			f.sweep(ctx)
		}
	}
}

// listen wakes the sequencer on each new row, the feeder on rows numbered
// by another process, and a rescan on a replay; and all of them after every
// (re)connect, since rows may have been written while it was away.
func (r *Relay) listen(ctx context.Context) {
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
	l.Handle("outbox", listenHandler{r})
	l.Handle("outbox_sequenced", listenHandler{r})
	if err := l.Listen(ctx); err != nil && ctx.Err() == nil {
		r.log.Error("outbox listener stopped", zap.Error(err))
	}
}

type listenHandler struct{ r *Relay }

func (h listenHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	switch {
	case n.Channel == "outbox_sequenced":
		// A step of this relay's own sequencer has poked the feeder
		// already (OnSequenced).
		if !h.r.seq.Own(n.PID) {
			h.r.feeder.poke()
		}
	case n.Payload == "replay":
		h.r.feeder.pokeRescan()
	default:
		h.r.seq.Wake()
	}
	return nil
}

func (h listenHandler) HandleBacklog(context.Context, string, *pgx.Conn) error {
	h.r.seq.Wake()
	h.r.feeder.pokeRescan()
	return nil
}

// drain admits numbered rows until a short batch.
func (f *feeder) drain(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := f.admit(ctx, nil)
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

// fullRescan admits every waiting row, a page per transaction, then goes
// on from the watermark.
func (f *feeder) fullRescan(ctx context.Context) {
	r := f.relay
	var high int64
	if err := r.pool.QueryRow(ctx, `SELECT coalesce(max(commit_seq), 0) FROM outbox`).Scan(&high); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("rescan of waiting outbox rows failed; retrying at the next rescan", zap.Error(err))
		}
		return
	}
	// Every row numbered by now is seen by the pages below (they start
	// later): the forward pass may go on after high.
	p := rescanPage{}
	for ctx.Err() == nil {
		n, err := f.admit(ctx, &p)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("rescan of waiting outbox rows failed; retrying at the next rescan", zap.Error(err))
			}
			return
		}
		if n < r.cfg.ClaimBatch {
			break
		}
	}
	f.watermark = max(f.watermark, high)
	f.drain(ctx)
}

// rescanPage is where a rescan goes on: rows created at or after after,
// except those ids (already seen at that timestamp).
type rescanPage struct {
	after time.Time
	seen  []int64
}

// admit runs one admission step: the next page of a rescan when page is
// set, else the rows numbered after the watermark. It returns how many
// rows it looked at.
//
// The decision (which rows are heads) is one statement on its own; only
// when it finds heads does a transaction insert their job and mark them.
// A row claimed meanwhile by another path stays with that claim (the
// marking is guarded) and the new job finds nothing of its own.
func (f *feeder) admit(ctx context.Context, page *rescanPage) (int, error) {
	r := f.relay
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	ordered, block, byEntity := r.headFlags()
	var heads []claimed
	seen := 0
	high := f.watermark
	var next rescanPage
	if page != nil {
		next = *page
		var id int64
		var created time.Time
		var at pgtype.Timestamptz
		var head bool
		err := r.readSorted(ctx, rescanSQL, []any{page.after, page.seen, r.cfg.ClaimBatch, ordered, block, byEntity}, []any{&id, &created, &at, &head}, func() error {
			seen++
			if !created.Equal(next.after) {
				next.after, next.seen = created, next.seen[:0:0]
			}
			next.seen = append(next.seen, id)
			if head {
				heads = append(heads, claimed{id, at})
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("rescan waiting outbox rows: %w", err)
		}
	} else if j := r.handoffs.take(); j != nil {
		return f.admitInto(ctx, j)
	} else {
		var id, seq int64
		var at pgtype.Timestamptz
		var head bool
		err := r.readSorted(ctx, admitSQL, []any{f.watermark, r.cfg.ClaimBatch, ordered, block, byEntity}, []any{&id, &seq, &at, &head}, func() error {
			seen++
			high = max(high, seq)
			if head {
				heads = append(heads, claimed{id, at})
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("claim outbox rows: %w", err)
		}
	}
	if len(heads) > 0 {
		var err error
		if heads, err = r.handOff(ctx, heads); err != nil && ctx.Err() == nil {
			r.log.Warn("handing rows to a waiting job failed; claiming them into a new job", zap.Error(err))
		}
	}
	if len(heads) > 0 {
		if err := r.claimNew(ctx, heads); err != nil {
			return 0, fmt.Errorf("claim outbox rows: %w", err)
		}
	}
	if page != nil {
		*page = next
	} else {
		f.watermark = high
	}
	return seen, nil
}

// admitInto is admit's step after the watermark when job j waits for rows:
// one statement (admitIntoSQL) finds the heads, claims up to BatchSize of
// them into j and returns them read, which j is given; the other heads are
// claimed into new jobs. j is always given an answer: when the statement
// failed, to read whatever it owns; when it claimed nothing, to go on
// waiting.
func (f *feeder) admitInto(ctx context.Context, j *openJob) (int, error) {
	r := f.relay
	ordered, block, byEntity := r.headFlags()
	args := []any{f.watermark, r.cfg.ClaimBatch, ordered, block, byEntity, r.cfg.BatchSize, j.id}
	var (
		given    []*batchRow
		heads    []claimed
		seen     int
		high     = f.watermark
		isClaim  bool
		seq      int64
		head     bool
		b        batchRow
		givenIDs = map[int64]bool{}
		dest     = append(append([]any{&isClaim}, b.scanDest()...), &seq, &head)
	)
	err := nosort.Write(ctx, r.pool, admitIntoSQL, args, func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, dest, func() error {
			if isClaim {
				row := b
				row.head = true
				given = append(given, &row)
				givenIDs[row.id] = true
				return nil
			}
			seen++
			high = max(high, seq)
			if head {
				heads = append(heads, claimed{b.id, b.at})
			}
			return nil
		})
		return err
	})
	if err != nil {
		j.rows <- handed{owned: true}
		return 0, fmt.Errorf("claim outbox rows into waiting batch job %d: %w", j.id, err)
	}
	if len(given) == 0 {
		j.rows <- handed{again: true}
	} else {
		j.rows <- handed{rows: given}
	}
	rest := heads[:0]
	for _, c := range heads {
		if !givenIDs[c.id] {
			rest = append(rest, c)
		}
	}
	if len(rest) > 0 {
		if err := r.claimNew(ctx, rest); err != nil {
			return 0, fmt.Errorf("claim outbox rows: %w", err)
		}
	}
	f.watermark = high
	return seen, nil
}

// readSorted runs one of admission's reads with the planner's Sort off
// (nosort.Scan): a Merge Append of one index scan per partition of the
// outbox, which stops after LIMIT rows, never a Sort of everything after
// the watermark, which statistics that call the current partition small
// would pick (the queries have no other sort). fn runs after each row is
// scanned into dest.
func (r *Relay) readSorted(ctx context.Context, sql string, args, dest []any, fn func() error) error {
	return nosort.Scan(ctx, r.pool, sql, args, dest, fn)
}

// claimNew is claim in a transaction of its own.
func (r *Relay) claimNew(ctx context.Context, rows []claimed) error {
	return pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error { return r.claim(ctx, tx, rows) })
}

// claim hands rows to new batch jobs of at most BatchSize rows, inside
// tx. Each job's args carry its rows' partSpan.
func (r *Relay) claim(ctx context.Context, tx pgx.Tx, rows []claimed) error {
	if len(rows) == 0 {
		return nil
	}
	var params []river.InsertManyParams
	for start := 0; start < len(rows); start += r.cfg.BatchSize {
		part := rows[start:min(start+r.cfg.BatchSize, len(rows))]
		params = append(params, river.InsertManyParams{Args: batchArgs(part), InsertOpts: batchInsertOpts(r.cfg.Queue)})
	}
	results, err := r.client.InsertManyTx(ctx, tx, params)
	if err != nil {
		return fmt.Errorf("insert delivery jobs: %w", err)
	}
	rowIDs := make([]int64, 0, len(rows))
	jobIDs := make([]int64, 0, len(rows))
	for i, res := range results {
		for _, id := range params[i].Args.(BatchArgs).IDs {
			rowIDs = append(rowIDs, id)
			jobIDs = append(jobIDs, res.Job.ID)
		}
	}
	lo, hi := spanOf(rows).bounds()
	if _, err := tx.Exec(ctx, setClaimedSQL, rowIDs, jobIDs, lo, hi); err != nil {
		return fmt.Errorf("mark claimed rows enqueued: %w", err)
	}
	return nil
}

// sweep hands rows whose job vanished back, then rescans.
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
		f.pokeRescan()
	}
}
