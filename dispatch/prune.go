package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/retention"
)

// PruneArgs is the River job that drops the outbox's partitions whose rows
// were all delivered more than Config.Retention ago (see package
// retention). River's elected leader inserts it every Config.PruneInterval
// (and once at start); it is unique while it waits or runs, so one relay
// prunes at a time. Failed rows are never pruned by it: they are moved out
// of a partition before it is dropped.
type PruneArgs struct{}

// PruneKind is the River job kind of PruneArgs.
const PruneKind = "outbox.prune"

// Kind implements river.JobArgs.
func (PruneArgs) Kind() string { return PruneKind }

// pruneBudget bounds one prune run; what is left waits for the next run.
func (r *Relay) pruneBudget() time.Duration { return min(r.cfg.PruneInterval, 5*time.Minute) }

// cutoffSQL is the retention cutoff: $1 seconds before the database's now().
const cutoffSQL = `SELECT now() - make_interval(secs => $1)`

type pruneWorker struct {
	river.WorkerDefaults[PruneArgs]
	relay *Relay
}

// Timeout leaves the run its budget plus time to finish a batch.
func (w *pruneWorker) Timeout(*river.Job[PruneArgs]) time.Duration {
	return w.relay.pruneBudget() + 30*time.Second
}

func (w *pruneWorker) Work(ctx context.Context, _ *river.Job[PruneArgs]) error {
	r := w.relay
	ctx, cancel := context.WithTimeout(ctx, r.pruneBudget())
	defer cancel()
	// The cutoff is taken from the database's clock, which wrote
	// delivered_at and bounds the partitions: an app server's clock off by
	// minutes would move it by as much.
	var before time.Time
	if err := r.pool.QueryRow(ctx, cutoffSQL, r.cfg.Retention.Seconds()).Scan(&before); err != nil {
		return fmt.Errorf("read the retention cutoff: %w", err)
	}
	res, err := retention.Prune(ctx, r.pool, retention.Options{
		DeliveredBefore: before,
		Batch:           r.cfg.PruneBatch,
		OnPartition: func(p retention.Partition) {
			r.metrics.part.dropped.Inc()
			r.log.Info("dropped outbox partition", zap.String("partition", p.Name), zap.Time("from", p.From),
				zap.Time("to", p.To), zap.Int64("rows_estimate", p.RowsEstimate))
		},
	})
	r.metrics.part.moved.Add(float64(res.Moved))
	log := r.log.With(zap.Int("partitions_dropped", len(res.Partitions)), zap.Int64("failed_rows_moved", res.Moved),
		zap.Time("delivered_before", before))
	switch {
	case err == nil:
		r.metrics.part.kept.Set(float64(len(res.Kept)))
		for _, p := range res.Kept {
			log.Info("outbox partition past retention kept", zap.String("partition", p.Name), zap.String("blocker", p.Blocker))
		}
		return nil
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		// Out of budget, or the relay is stopping: every batch so far is
		// committed, the next run goes on.
		log.Info("pruning stopped early; the next run continues", zap.Error(err))
		return nil
	default:
		log.Warn("prune delivered outbox rows failed", zap.Error(err))
		return err
	}
}

// periodicJobs is the retention job, or none when Retention is 0 (every
// delivered row is kept).
func (r *Relay) periodicJobs() []*river.PeriodicJob {
	if r.cfg.Retention == 0 {
		return nil
	}
	return []*river.PeriodicJob{river.NewPeriodicJob(
		river.PeriodicInterval(r.cfg.PruneInterval),
		func() (river.JobArgs, *river.InsertOpts) {
			return PruneArgs{}, &river.InsertOpts{
				Queue:       r.cfg.Queue,
				MaxAttempts: 3,
				UniqueOpts:  river.UniqueOpts{ByState: liveStates},
			}
		},
		&river.PeriodicJobOpts{RunOnStart: true},
	)}
}

// riverRetention is how long River keeps cancelled and discarded jobs:
// as long as the outbox keeps delivered rows, or 7 days when Retention is 0
// (River has no "keep for ever").
func (c Config) riverRetention() time.Duration {
	if c.Retention == 0 {
		return 7 * 24 * time.Hour
	}
	return c.Retention
}
