package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/outbox"
)

// TestHandOff: a batch job that has nothing left waits for rows, and the
// rows admission finds meanwhile are handed to it (no River job is
// inserted for them); a stopping relay does not wait for such a job.
func TestHandOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	jobStates := func(t *testing.T, b *bundle) []string {
		t.Helper()
		rows, err := b.pool.Query(ctx, `SELECT state FROM river_job WHERE kind = $1 ORDER BY id`, dispatch.BatchKind)
		if err != nil {
			t.Fatal(err)
		}
		states, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return states
	}
	waiting := func(t *testing.T, relay *dispatch.Relay) {
		t.Helper()
		waitFor(t, 10*time.Second, "a job to wait for rows", func() bool { return dispatch.WaitingJobs(relay) == 1 })
	}
	jobOf := func(t *testing.T, b *bundle, id int64) int64 {
		t.Helper()
		var job int64
		if err := b.pool.QueryRow(ctx, `SELECT job_id FROM outbox WHERE id = $1`, id).Scan(&job); err != nil {
			t.Fatal(err)
		}
		return job
	}
	slow := func(c *dispatch.Config) {
		// A young window (JobTimeout/3) of a minute, and a long wait, so
		// the job that delivered the first row is still waiting when the
		// next ones come.
		c.JobTimeout, c.RescueAfter, c.Linger = 3*time.Minute, 4*time.Minute, time.Minute
	}

	t.Run("RowsGoToTheWaitingJob", func(t *testing.T) {
		t.Parallel()
		// Warnings would say a hand-off failed and the job found its rows
		// another way.
		core, logs := observer.New(zapcore.WarnLevel)
		b := setup(t, setupOpts{config: func(c *dispatch.Config) {
			slow(c)
			c.Logger = zap.New(zapcore.NewTee(c.Logger.Core(), core))
		}})
		relay := b.start(t)
		first := b.emit(t, outbox.CutCompleted("acme", "c1", "a1"))
		b.waitDelivered(t, 1)
		var later []int64
		for i, asset := range []string{"a2", "a3", "a1"} {
			waiting(t, relay) // each row comes while the job waits
			later = append(later, b.emit(t, outbox.RenderCompleted("acme", "r"+string(rune('1'+i)), asset)))
			b.waitDelivered(t, 2+i)
		}
		job := jobOf(t, b, first)
		for _, id := range append([]int64{first}, later...) {
			b.assertDeliveredOnce(t, id)
			if got := jobOf(t, b, id); got != job {
				t.Errorf("row %d went to job %d, want the waiting job %d", id, got, job)
			}
		}
		if states := jobStates(t, b); len(states) != 1 {
			t.Errorf("river holds %d batch jobs (%v), want 1: the later rows were handed to the waiting job", len(states), states)
		}
		for _, e := range logs.All() {
			t.Errorf("relay logged %s %q %v", e.Level, e.Message, e.ContextMap())
		}
	})

	t.Run("EmptyAdmissionsKeepTheJobWaiting", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{config: slow})
		relay := b.start(t)
		first := b.emit(t, outbox.CutCompleted("acme", "c1", "a1"))
		b.waitDelivered(t, 1)
		waiting(t, relay)
		// Admission runs at every poll (200 ms here) and, with a job
		// waiting, takes it; finding no row, it gives the job back.
		waitFor(t, 10*time.Second, "three admissions that found no row", func() bool { return dispatch.EmptyHandOffs(relay) >= 3 })
		waiting(t, relay) // still, or again
		later := b.emit(t, outbox.RenderCompleted("acme", "r1", "a2"))
		b.waitDelivered(t, 2)
		if got, want := jobOf(t, b, later), jobOf(t, b, first); got != want {
			t.Errorf("row %d went to job %d, want the waiting job %d", later, got, want)
		}
	})

	t.Run("StoppingRelayEndsTheWait", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{config: func(c *dispatch.Config) { slow(c); c.ShutdownTimeout = 50 * time.Second }})
		relay, err := dispatch.New(b.pool, b.sender, b.cfg)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		done := make(chan error, 1)
		go func() { done <- relay.Run(runCtx) }()
		b.emit(t, outbox.CutCompleted("acme", "c1", "a1"))
		b.waitDelivered(t, 1)
		waiting(t, relay)
		if states := jobStates(t, b); len(states) != 1 || states[0] != "running" {
			t.Fatalf("batch jobs while one waits for rows: %v, want one running", states)
		}
		stop()
		// A wait left running would hold the stop for the whole minute of
		// Linger, past the 40 s River is given to finish its jobs.
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("relay.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the relay did not stop within 30s: the waiting job held it")
		}
		if states := jobStates(t, b); len(states) != 1 || states[0] != "completed" {
			t.Errorf("batch jobs after the stop: %v, want one completed", states)
		}
	})
}
