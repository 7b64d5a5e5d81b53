package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/riverqueue/river"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/retention"
)

// PruneArgs is the River job that deletes delivered outbox rows older than
// Config.Retention. River's elected leader inserts it every
// Config.PruneInterval (and once at start); it is unique while it waits or
// runs, so one relay prunes at a time. Failed rows are never pruned by it.
type PruneArgs struct{}

// PruneKind is the River job kind of PruneArgs.
const PruneKind = "outbox.prune"

// Kind implements river.JobArgs.
func (PruneArgs) Kind() string { return PruneKind }

// pruneBudget bounds one prune run; what is left waits for the next run.
func (r *Relay) pruneBudget() time.Duration { return min(r.cfg.PruneInterval, 5*time.Minute) }

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
	before := time.Now().Add(-r.cfg.Retention)
	res, err := retention.Prune(ctx, r.pool, retention.Options{DeliveredBefore: before, Batch: r.cfg.PruneBatch})
	log := r.log.With(zap.Int64("deleted", res.Delivered), zap.Time("delivered_before", before))
	switch {
	case err == nil:
		if res.Delivered > 0 {
			log.Info("pruned delivered outbox rows")
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
