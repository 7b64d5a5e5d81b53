package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"go.uber.org/zap"
)

// deliverWorker sends one outbox row to Svix and records the outcome.
type deliverWorker struct {
	river.WorkerDefaults[DeliverArgs]
	relay *Relay
}

// Timeout bounds one attempt: the rate-limit wait, the Svix call and the
// bookkeeping.
func (w *deliverWorker) Timeout(*river.Job[DeliverArgs]) time.Duration {
	return w.relay.cfg.JobTimeout
}

// NextRetry applies to errors River sees (the outbox could not be written)
// and to jobs rescued after a crash: soon, capped.
func (w *deliverWorker) NextRetry(job *river.Job[DeliverArgs]) time.Time {
	return time.Now().Add(backoff(job.Attempt, w.relay.cfg.BackoffMin, w.relay.cfg.BackoffMax))
}

func (w *deliverWorker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	r := w.relay
	a := job.Args
	log := r.log.With(
		zap.Int64("outbox_id", a.OutboxID),
		zap.String("app_id", a.AppID),
		zap.String("event_type", a.EventType),
	)

	if wait := r.pausedFor(); wait > 0 {
		// Svix asked everyone to slow down; do not spend a request.
		return river.JobSnooze(jitter(wait))
	}
	// The claim found no earlier row of the key undelivered; that holds for
	// the job's first run only: by a retry, an earlier row may have been
	// replayed and must go first.
	snoozed := snoozes(job)
	if r.ordering != nil && !(a.HeadOfKey && snoozed == 0 && job.Attempt <= 1) {
		if wait, err := r.ordering.wait(ctx, a, snoozed); err != nil {
			return fmt.Errorf("check order of outbox row %d: %w", a.OutboxID, err)
		} else if wait > 0 {
			return river.JobSnooze(wait)
		}
	}
	if r.limiter != nil {
		if err := r.waitForRate(ctx); err != nil {
			// The wait would outlast the attempt, or the relay is stopping:
			// not an attempt, try again soon.
			return river.JobSnooze(jitter(time.Second))
		}
	}

	start := time.Now()
	sent, err := r.sender.Send(ctx, Message{AppID: a.AppID, EventType: a.EventType, Data: a.Data, Key: a.Key()})
	r.metrics.observeRequest(err, time.Since(start))

	// The Svix call happened: its outcome is recorded even if the job's
	// context is cancelled now.
	book := context.WithoutCancel(ctx)
	var (
		rateLimited *RateLimitedError
		authErr     *AuthError
		permanent   *PermanentError
	)
	switch {
	case err == nil:
		r.authAccepted()
		res, rerr := r.recorder.record(book, outcome{id: a.OutboxID, resends: a.Resends, kind: outcomeDelivered, msgID: sent.MessageID,
			next: r.wakes(&a, false)})
		if rerr != nil {
			// River retries the job; Svix answers the retry from its
			// idempotency cache, so Svix still has one message.
			return fmt.Errorf("record delivery of outbox row %d: %w", a.OutboxID, rerr)
		}
		r.metrics.delivered(a.EventType, sent.Duplicate, res)
		r.wakeNext(book, a, res)
		log.Info("delivered", zap.String("svix_msg_id", sent.MessageID), zap.Bool("duplicate", sent.Duplicate),
			zap.Int("attempt", res.attempts+1))
		return nil

	case ctx.Err() != nil && r.stopping.Load():
		// Cut off by shutdown: not a failed attempt. The row's job is
		// available again at once, for this relay's successor or a peer.
		log.Info("send interrupted by shutdown; left for the next relay")
		return river.JobSnooze(0)

	case errors.As(err, &rateLimited):
		wait := rateLimited.RetryAfter
		if wait <= 0 {
			wait = backoff(snoozed+1, r.cfg.BackoffMin, r.cfg.BackoffMax)
		}
		r.pause(wait)
		r.metrics.outcome(a.EventType, "rate_limited")
		log.Warn("svix rate limited the send; waiting", zap.Duration("retry_after", wait))
		return river.JobSnooze(wait)

	case errors.As(err, &permanent):
		r.authAccepted()
		res, rerr := r.recorder.record(book, outcome{id: a.OutboxID, resends: a.Resends, kind: outcomeFailed, errText: err.Error(),
			next: r.wakes(&a, true)})
		if rerr != nil {
			return fmt.Errorf("record failure of outbox row %d: %w", a.OutboxID, rerr)
		}
		if !res.applied {
			log.Info("row already ended; dropping this attempt's job", zap.Error(err))
			return nil
		}
		r.metrics.outcome(a.EventType, "failed")
		r.failedInOrder(book, a, res)
		log.Error("svix refused the message; row failed until replayed", zap.Error(err), zap.Int("status", permanent.Status))
		return river.JobCancel(err)
	}

	// A transient failure, or our token is rejected: count the attempt.
	kind := outcomeRetry
	errText := err.Error()
	if errors.As(err, &authErr) {
		r.authRejected()
		log.Error("svix rejected the relay's token: check SVIX_AUTH_TOKEN; rows are kept and retried", zap.Error(err))
	} else if age := time.Since(time.UnixMicro(a.CreatedUS)); age > r.cfg.MaxAge {
		kind = outcomeFailed
		errText = fmt.Sprintf("gave up after %s (max age %s): %s", age.Round(time.Second), r.cfg.MaxAge, errText)
	}
	var next *DeliverArgs
	if kind == outcomeFailed {
		next = r.wakes(&a, true)
	}
	res, rerr := r.recorder.record(book, outcome{id: a.OutboxID, resends: a.Resends, kind: kind, errText: errText, next: next})
	if rerr != nil {
		return fmt.Errorf("record failed attempt of outbox row %d: %w (send: %v)", a.OutboxID, rerr, err)
	}
	if !res.applied {
		// The row ended meanwhile (another attempt delivered it, it was
		// resent, or deleted): this job has nothing left to do.
		log.Info("row already ended; dropping this attempt's job", zap.Error(err))
		return nil
	}
	if kind == outcomeFailed {
		r.metrics.outcome(a.EventType, "failed")
		r.failedInOrder(book, a, res)
		log.Error("row failed: transient errors past its max age", zap.Error(err), zap.Int("attempt", res.attempts))
		return river.JobCancel(errors.New(errText))
	}
	r.metrics.outcome(a.EventType, "retry")
	wait := backoff(res.attempts, r.cfg.BackoffMin, r.cfg.BackoffMax)
	if authErr == nil {
		log.Warn("send failed; will retry", zap.Error(err), zap.Int("attempt", res.attempts), zap.Duration("retry_in", wait))
	}
	return river.JobSnooze(wait)
}

// snoozes reads how often River has snoozed the job.
func snoozes(job *river.Job[DeliverArgs]) int {
	var md struct {
		Snoozes int `json:"snoozes"`
	}
	_ = json.Unmarshal(job.Metadata, &md)
	return md.Snoozes
}

// wakes returns a when the end of its row may let the next row of its key
// go (ordering is on and, for a failure, failures do not block the key):
// the recorder then looks up that row's job with the outcome.
func (r *Relay) wakes(a *DeliverArgs, failed bool) *DeliverArgs {
	if r.ordering == nil || failed && r.ordering.blockOnFailure {
		return nil
	}
	return a
}

// wakeNext makes the job of the next row of a's key, which the recorder
// found with a's outcome, run now instead of at its next recheck.
func (r *Relay) wakeNext(ctx context.Context, a DeliverArgs, res outcomeResult) {
	err := res.nextErr
	if err == nil && res.nextJobID != 0 {
		_, err = r.client.JobRetry(ctx, res.nextJobID)
	}
	if err != nil {
		// The next row still runs at its recheck.
		r.log.Debug("could not wake the next row of the key", zap.Int64("outbox_id", a.OutboxID), zap.Error(err))
	}
}

// failedInOrder lets the rest of a failed row's key go on, unless failures
// block their key.
func (r *Relay) failedInOrder(ctx context.Context, a DeliverArgs, res outcomeResult) {
	if r.ordering == nil || r.ordering.blockOnFailure {
		return
	}
	r.metrics.orderingSkipped.Inc()
	r.wakeNext(ctx, a, res)
}
