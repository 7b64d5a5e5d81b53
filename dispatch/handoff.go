package dispatch

import (
	"context"
	"sync"
	"time"
)

// Handing rows to a batch job that waits for work.
//
// A batch job that has recorded its rows and has no next rows of its keys
// to go on with does not return at once while it is young (the window in
// which it keeps its keys' next rows, JobTimeout/3): it waits up to
// Linger, open to new rows. Admission hands the heads it finds to such a
// job with one statement, setClaimedSQL with the job's id, in place of a
// transaction that inserts a River job which River's producer must then
// notice, fetch and complete: fewer round trips per row, and no wait for
// River's fetch loop between a row's commit and its send.
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
}

// maxOpenJobs bounds the jobs of one relay that wait for rows: each holds
// a River worker slot while it waits (and shows as running in River UI).
const maxOpenJobs = 4

// openJob is a job waiting for rows. Admission sends on rows exactly once
// after taking the job.
type openJob struct {
	id   int64
	rows chan []claimed
}

// add makes j open, unless enough jobs wait already or the relay stops.
func (h *handoffs) add(j *openJob) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.open) >= maxOpenJobs {
		return false
	}
	h.open = append(h.open, j)
	return true
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
		j.rows <- nil
	}
	h.open = nil
}

// linger waits, for a job that has nothing left, up to Linger (and no
// later than until) for rows handed to it by admission, and returns them:
// nil when none came.
func (r *Relay) linger(ctx context.Context, jobID int64, until time.Time) []claimed {
	wait := min(r.cfg.Linger, time.Until(until))
	if wait <= 0 || r.stopping.Load() {
		return nil
	}
	j := &openJob{id: jobID, rows: make(chan []claimed, 1)}
	if !r.handoffs.add(j) {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case rows := <-j.rows:
		return rows
	case <-t.C:
	case <-ctx.Done():
	}
	if r.handoffs.remove(j) {
		return nil
	}
	// Admission took the job as the wait ended: its rows (or nil) follow
	// at once, and must not be left behind.
	return <-j.rows
}

// handOff gives heads, up to BatchSize of them, to a job waiting for rows,
// if one is, and returns the rest, to be claimed into new jobs. The job
// is given the rows whatever the claim's result: it reads only those it
// owns (job_id), so rows the statement did not claim (an error, or another
// claim was first) are left alone, and rows it did claim are never left
// with a job that has returned. Rows it may not have claimed also go back
// to the caller, whose claim is guarded the same way.
func (r *Relay) handOff(ctx context.Context, heads []claimed) ([]claimed, error) {
	j := r.handoffs.take()
	if j == nil {
		return heads, nil
	}
	part := heads[:min(len(heads), r.cfg.BatchSize)]
	jobIDs := make([]int64, len(part))
	for i := range jobIDs {
		jobIDs[i] = j.id
	}
	lo, hi := spanOf(part).bounds()
	_, err := r.pool.Exec(ctx, setClaimedSQL, idsOf(part), jobIDs, lo, hi)
	j.rows <- part
	if err != nil {
		return heads, err
	}
	return heads[len(part):], nil
}
