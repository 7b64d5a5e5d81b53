package dispatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/testkit"
	"github.com/mediaplatform/relay/outbox"
)

// TestPrune runs a relay whose retention job prunes at start: the
// partition of delivered rows past the retention goes; recent rows and the
// failed row (moved out of it first) stay.
func TestPrune(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{config: func(c *dispatch.Config) {
		c.Retention = 24 * time.Hour
		c.PruneInterval = time.Hour // the run at start is the one tested
		c.PruneBatch = 2
	}})
	ctx := context.Background()
	state := func(id int64, set string) {
		t.Helper()
		if _, err := b.pool.Exec(ctx, "UPDATE outbox SET "+set+" WHERE id = $1", id); err != nil {
			t.Fatal(err)
		}
	}
	const (
		old    = "enqueued_at = now() - interval '3 days', delivered_at = now() - interval '2 days', svix_message_id = 'msg_old'"
		recent = "enqueued_at = now() - interval '1 hour', delivered_at = now() - interval '1 hour', svix_message_id = 'msg_new'"
		failed = "enqueued_at = now() - interval '3 days', failed_at = now() - interval '2 days', last_error = '422 validation'"
	)
	var olds []int64
	for i := range 5 {
		id := b.emit(t, outbox.RenderCompleted("acme", "render_old", fmt.Sprint("asset_", i)))
		state(id, old)
		olds = append(olds, id)
	}
	recentID := b.emit(t, outbox.RenderCompleted("acme", "render_new", "asset_new"))
	state(recentID, recent)
	failedID := b.emit(t, outbox.RenderFailed("acme", "render_failed", "asset_failed"))
	state(failedID, failed)

	// Number the rows first: the relay's sequencer numbering them while the
	// retention job runs would hold their row locks, which the job skips.
	if _, err := b.pool.Exec(ctx, "SELECT outbox_sequence()"); err != nil {
		t.Fatal(err)
	}
	// Written three days ago, in a partition of their own.
	testkit.MoveToPartition(t, b.pool, time.Now().Add(-3*24*time.Hour), append(olds, failedID)...)

	b.start(t)
	waitFor(t, 30*time.Second, "the retention job to prune old delivered rows", func() bool {
		return b.count(t, "delivered_at < now() - interval '1 day'") == 0
	})
	if n := b.count(t, fmt.Sprintf("id IN (%d, %d)", recentID, failedID)); n != 2 {
		t.Errorf("%d of the recent delivered row and the old failed row left, want both (2)", n)
	}
	waitFor(t, 30*time.Second, "the prune job to complete", func() bool {
		var n int
		err := b.pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE kind = $1 AND state = 'completed'", dispatch.PruneKind).Scan(&n)
		return err == nil && n == 1
	})
}
