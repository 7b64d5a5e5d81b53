package dispatch

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/riverqueue/river"
)

// Handing rows to a batch job that waits for work.
//
// A batch job that has recorded its rows and has no next rows of its keys
// to go on with does not return at once while it is young (the window in
// which it keeps its keys' next rows, JobTimeout/3): it waits up to
// Linger, open to new rows. Admission hands the heads it finds to such a
// job in one statement that claims them for the job and reads them for it
// (admitIntoSQL, which also decides which rows are heads; handOffSQL for
// a rescan's heads), in place of a transaction that inserts a River job
// which River's producer must then notice, fetch and complete, and which
// then reads its rows: fewer round trips per row, and no wait for River's
// fetch loop between a row's commit and its send.
//
// Rows handed to a job are owned exactly like the next rows of its keys
// that its own outcome transaction claims into it (keep): by job_id, and
// the job is running in River all along. A job that was handed rows never
// returns before it has read them; if it fails or the relay dies, River
// runs it again (after RescueAfter, once the relay is gone) and the rerun
// finds its rows by job_id (ownedRows). A job that has stopped waiting
// takes no more rows: taking an open job and closing it happen under one
// lock, and admission then always gives the job its answer.
type handoffs struct {
	mu     sync.Mutex
	open   []*openJob // jobs waiting for rows
	closed bool       // the relay is stopping: no job waits any more
	empty  int        // times admission took a waiting job and had no row for it
}

// maxOpenJobs bounds the jobs of one relay that wait for rows: each holds
// a River worker slot while it waits (and shows as running in River UI).
const maxOpenJobs = 4

// openJob is a job waiting for rows. Admission sends on rows exactly once
// after taking the job.
type openJob struct {
	id   int64
	rows chan handed
}

// handed is what admission gives a waiting job: the rows it claimed for
// the job, read by the claim, or, when the claim failed (owned), nothing
// the job can trust: it finds the rows it owns itself (the claim may have
// committed). again: admission claimed nothing, and the job may go on
// waiting. Empty when no row came.
type handed struct {
	rows  []*batchRow
	owned bool
	again bool
}

func (h handed) empty() bool { return len(h.rows) == 0 && !h.owned }

// handOffSQL claims rows for a waiting job ($2), guarded as setClaimedSQL
// is (a row another claim took stays with it), and returns what the job
// reads of them (readSQL's columns and head test), so the job need not
// read them again. $6 and $7 are the rows' partSpan.
const handOffSQL = `
UPDATE outbox AS o SET enqueued_at = clock_timestamp(), job_id = $2
 WHERE o.id = ANY ($1::bigint[]) AND o.partition_at >= $6 AND o.partition_at <= $7 AND o.partition_at <= ` + notAhead + `
   AND o.enqueued_at IS NULL AND num_nulls(o.delivered_at, o.failed_at) = 2
RETURNING ` + rowColumns + `,
       ` + headTest

// add makes j open, unless enough jobs wait already or the relay stops.
func (h *handoffs) add(j *openJob) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addLocked(j)
}

func (h *handoffs) addLocked(j *openJob) bool {
	if h.closed || len(h.open) >= maxOpenJobs {
		return false
	}
	h.open = append(h.open, j)
	return true
}

// readd makes j open again after admission took it and had no row for
// it, as add does, and counts that.
func (h *handoffs) readd(j *openJob) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.empty++
	return h.addLocked(j)
}

// remove closes j; false when admission took it first (its rows follow).
func (h *handoffs) remove(j *openJob) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, o := range h.open {
		if o == j {
			h.open = append(h.open[:i], h.open[i+1:]...)
			return true
		}
	}
	return false
}

// take removes and returns the job that started waiting last (its
// connections and caches are the warmest), or nil.
func (h *handoffs) take() *openJob {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.open) == 0 {
		return nil
	}
	j := h.open[len(h.open)-1]
	h.open = h.open[:len(h.open)-1]
	return j
}

// close ends every wait, for a stopping relay: the waiting jobs return.
func (h *handoffs) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, j := range h.open {
		j.rows <- handed{}
	}
	h.open = nil
}

// linger waits, for a job that has nothing left, up to Linger (and no
// later than until) for rows handed to it by admission, and returns them.
func (r *Relay) linger(ctx context.Context, jobID int64, until time.Time) handed {
	wait := min(r.cfg.Linger, time.Until(until))
	if wait <= 0 || r.stopping.Load() {
		return handed{}
	}
	j := &openJob{id: jobID, rows: make(chan handed, 1)}
	if !r.handoffs.add(j) {
		return handed{}
	}
	t := time.NewTimer(wait)
	defer t.Stop()
wait:
	for {
		select {
		case h := <-j.rows:
			if !h.again {
				return h
			}
			// Admission took the job but had nothing for it.
			if !r.handoffs.readd(j) {
				return handed{}
			}
		case <-t.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	if r.handoffs.remove(j) {
		return handed{}
	}
	// Admission took the job as the wait ended: its rows (or none) follow
	// at once, and must not be left behind.
	return <-j.rows
}

// takeHanded returns the handed rows the job sends: the heads of their
// keys (keepHeads), read by the hand-off or, when it failed, now (the rows
// the job owns, as a rerun finds them). It holds a writer slot (asWriter)
// while it reads or hands rows back.
func (r *Relay) takeHanded(ctx context.Context, job *river.Job[BatchArgs], h handed) (rows []*batchRow, err error) {
	if h.owned {
		owned, err := r.ownedRows(ctx, job.ID)
		if err != nil || len(owned) == 0 {
			return nil, err
		}
		return r.readBatch(ctx, job, idsOf(owned), spanOf(owned))
	}
	if !slices.ContainsFunc(h.rows, func(b *batchRow) bool { return !b.head }) {
		return h.rows, nil
	}
	err = r.asWriter(ctx, func() error {
		rows, err = r.keepHeads(ctx, job, h.rows)
		return err
	})
	return rows, err
}

// handOff gives heads, up to BatchSize of them, to a job waiting for rows,
// if one is, and returns the rest, to be claimed into new jobs. The job
// is given an answer whatever the claim's result: the rows the statement
// claimed and read, or, when it failed, word to find the rows it owns
// (job_id). So rows another claim took are left alone, and rows this one
// took are never left with a job that has returned. Rows it may not have
// claimed also go back to the caller, whose claim is guarded the same way.
func (r *Relay) handOff(ctx context.Context, heads []claimed) ([]claimed, error) {
	j := r.handoffs.take()
	if j == nil {
		return heads, nil
	}
	part := heads[:min(len(heads), r.cfg.BatchSize)]
	lo, hi := spanOf(part).bounds()
	ordered, block, byEntity := r.headFlags()
	res, err := r.pool.Query(ctx, handOffSQL, idsOf(part), j.id, ordered, block, byEntity, lo, hi)
	var rows []*batchRow
	if err == nil {
		rows, err = scanBatchRows(res)
	}
	if err != nil {
		j.rows <- handed{owned: true}
		return heads, fmt.Errorf("hand rows to waiting batch job %d: %w", j.id, err)
	}
	j.rows <- handed{rows: rows}
	return heads[len(part):], nil
}
