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

func (r *Relay) sampleLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.SampleInterval)
	defer t.Stop()
	for {
		r.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Relay) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.SampleInterval)
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
