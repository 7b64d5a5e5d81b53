package dispatch

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// sampleSQL reads the row gauges through the schema's row-state views
// (outbox_pending, outbox_undelivered), served by the partial indexes,
// which hold only undelivered and failed rows, so it stays cheap on a
// large table.
const sampleSQL = `
SELECT
    (SELECT count(*) FROM outbox_pending),
    (SELECT count(*) FROM outbox_undelivered),
    (SELECT count(*) FROM outbox WHERE failed_at IS NOT NULL),
    coalesce((SELECT extract(epoch FROM clock_timestamp() - min(created_at))::float8
                FROM outbox_undelivered), 0)`

// sampleCostShare bounds the share of one database backend the gauges
// take: a sample that took d is followed by the next one no sooner than
// d/sampleCostShare later (and no sooner than SampleInterval). Counting
// the rows of a backlog of a million takes seconds, more with statistics
// taken before it grew; sampled every SampleInterval regardless, the
// gauges alone would keep a backend busy through the drain.
const sampleCostShare = 0.05

func (r *Relay) sampleLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		r.sample(ctx)
		t.Reset(max(r.cfg.SampleInterval, time.Duration(float64(time.Since(start))/sampleCostShare)))
	}
}

func (r *Relay) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.SampleInterval, time.Minute))
	defer cancel()
	var pending, undelivered, failed int64
	var oldest float64
	if err := r.pool.QueryRow(ctx, sampleSQL).Scan(&pending, &undelivered, &failed, &oldest); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("sample outbox gauges failed", zap.Error(err))
		}
		return
	}
	r.metrics.pending.Set(float64(pending))
	r.metrics.inFlight.Set(float64(undelivered - pending))
	r.metrics.failed.Set(float64(failed))
	r.metrics.oldestSecs.Set(oldest)
}
