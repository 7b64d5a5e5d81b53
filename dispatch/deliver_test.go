package dispatch_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/outbox"
)

// TestKeyGoesOnWhileItsBatchWaits: a batch job records each answer as it
// comes and sends the next row of that key at once, so one key's rows go
// through while another row of the same batch is held at Svix.
func TestKeyGoesOnWhileItsBatchWaits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Sends may wait long (the held one waits for the test), so the held
	// row stays in its batch until released.
	b := setup(t, setupOpts{config: func(c *dispatch.Config) { c.JobTimeout, c.RescueAfter = 2*time.Minute, 3*time.Minute }})
	sender, err := dispatch.NewSvixSender(dispatch.SvixConfig{Token: svixfake.DefaultToken, ServerURL: b.fake.URL(), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	b.sender = sender
	release := make(chan struct{})
	b.fake.SetInterceptor(func(r *svixfake.Request) (svixfake.Reply, bool) {
		if r.Method == http.MethodPost && r.EventType == "asset.pending_payment" {
			<-release
		}
		return svixfake.Reply{}, false
	})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	held := b.emit(t, outbox.AssetPendingPayment("acme", "asset_1"))
	chain := []int64{
		b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_2")),
		b.emit(t, outbox.RenderCompleted("acme", "render_1", "asset_2")),
		b.emit(t, outbox.AssetReady("acme", "asset_2", outbox.PreviousStateProcessing)),
	}
	// Numbered before the relay starts, both heads are admitted by its
	// first look, into one batch job.
	if _, err := b.pool.Exec(ctx, `SELECT outbox_sequence()`); err != nil {
		t.Fatal(err)
	}
	b.start(t)

	waitFor(t, 20*time.Second, "the other asset's rows to be delivered", func() bool {
		return b.count(t, "delivered_at IS NOT NULL") == len(chain)
	})
	for _, id := range chain {
		b.assertDeliveredOnce(t, id)
	}
	jobOf := func(id int64) int64 {
		var job int64
		if err := b.pool.QueryRow(ctx, `SELECT job_id FROM outbox WHERE id = $1`, id).Scan(&job); err != nil {
			t.Fatal(err)
		}
		return job
	}
	if r := b.row(t, held); r.DeliveredAt != nil {
		t.Fatalf("row %d was delivered while Svix held it", held)
	}
	for _, id := range chain {
		if jobOf(id) != jobOf(held) {
			t.Fatalf("row %d is in job %d, the held row in job %d: want the rows of one batch job", id, jobOf(id), jobOf(held))
		}
	}
	close(release)
	waitFor(t, 30*time.Second, "the held row to be delivered", func() bool { return b.row(t, held).DeliveredAt != nil })
	b.assertDeliveredOnce(t, held)
}
