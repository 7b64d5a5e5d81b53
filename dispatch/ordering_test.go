package dispatch_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/outbox"
)

// failFirstOfType answers the first create of each message of eventType
// with reply.
func failFirstOfType(eventType string, reply svixfake.Reply) svixfake.Interceptor {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(r *svixfake.Request) (svixfake.Reply, bool) {
		if r.Method != http.MethodPost || r.EventType != eventType || !strings.HasSuffix(r.Path, "/msg") {
			return svixfake.Reply{}, false
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[r.EventID] {
			return svixfake.Reply{}, false
		}
		seen[r.EventID] = true
		return reply, true
	}
}

// acceptedOrder returns, per asset, the event types in the order Svix
// accepted them.
func acceptedOrder(t *testing.T, fake *svixfake.Server) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range fake.AllMessages() {
		var p struct {
			Data struct {
				AssetID string `json:"asset_id"`
			} `json:"data"`
		}
		if err := jsonUnmarshal(m.Payload, &p); err != nil {
			t.Fatal(err)
		}
		out[p.Data.AssetID] = append(out[p.Data.AssetID], m.EventType)
	}
	return out
}

func TestOrdering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const assets = 50

	// Every asset's pending_payment is refused once (503); its ready is
	// written after the pending_payment committed and must not overtake it.
	pendingThenReady := func(t *testing.T, relays int) {
		b := setup(t, setupOpts{})
		b.fake.SetInterceptor(failFirstOfType("asset.pending_payment", svixfake.Reply{Status: http.StatusServiceUnavailable}))
		for range relays {
			b.start(t)
		}
		for i := range assets {
			b.emit(t, outbox.AssetPendingPayment("acme", fmt.Sprintf("asset_%d", i)))
		}
		for i := range assets {
			b.emit(t, outbox.AssetReady("acme", fmt.Sprintf("asset_%d", i), outbox.PreviousStatePendingPayment))
		}
		b.waitDelivered(t, 2*assets)
		for asset, types := range acceptedOrder(t, b.fake) {
			if len(types) != 2 || types[0] != "asset.pending_payment" || types[1] != "asset.ready" {
				t.Errorf("%s: svix accepted %v, want pending_payment then ready", asset, types)
			}
		}
	}
	t.Run("RetriedEarlierRowGoesFirst", func(t *testing.T) {
		t.Parallel()
		pendingThenReady(t, 1)
	})
	t.Run("TwoRelays", func(t *testing.T) {
		t.Parallel()
		pendingThenReady(t, 2)
	})

	t.Run("ManyEventsOfOneAssetUnderFailures", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.fake.SetFailureRate(0.3, http.StatusServiceUnavailable)
		b.start(t)
		b.start(t)
		const n = 30
		var want []string
		for i := range n {
			ev := outbox.RenderCompleted("acme", fmt.Sprintf("render_%02d", i), "asset_hot")
			b.emit(t, ev)
			want = append(want, fmt.Sprintf("render_%02d", i))
		}
		b.waitDelivered(t, n)
		var got []string
		for _, m := range b.fake.AllMessages() {
			var p struct {
				Data struct {
					EntityID string `json:"entity_id"`
				} `json:"data"`
			}
			if err := jsonUnmarshal(m.Payload, &p); err != nil {
				t.Fatal(err)
			}
			got = append(got, p.Data.EntityID)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("svix accepted\n%v\nwant commit order\n%v", got, want)
		}
	})

	t.Run("FailedRowIsSkippedThenReplayed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.fake.SetInterceptor(failFirstOfType("asset.pending_payment", svixfake.Reply{Status: http.StatusUnprocessableEntity}))
		b.start(t)
		first := b.emit(t, outbox.AssetPendingPayment("acme", "asset_1"))
		second := b.emit(t, outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment))
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, second)
		if r := b.row(t, first); r.FailedAt == nil {
			t.Fatalf("first row not failed: %+v", r)
		}
		if _, err := b.pool.Exec(ctx, `SELECT outbox_replay($1)`, first); err != nil {
			t.Fatal(err)
		}
		b.waitDelivered(t, 2)
		b.assertDeliveredOnce(t, first)
	})

	t.Run("ReplayedRowGoesBeforeALaterRowInBackoff", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{config: func(c *dispatch.Config) { c.BackoffMin = time.Second; c.BackoffMax = time.Second }})
		var mu sync.Mutex
		seen := map[string]int{}
		b.fake.SetInterceptor(func(r *svixfake.Request) (svixfake.Reply, bool) {
			if r.Method != http.MethodPost || !strings.HasSuffix(r.Path, "/msg") {
				return svixfake.Reply{}, false
			}
			mu.Lock()
			seen[r.EventType]++
			n := seen[r.EventType]
			mu.Unlock()
			switch {
			case r.EventType == "asset.pending_payment" && n == 1:
				return svixfake.Reply{Status: http.StatusUnprocessableEntity}, true // fails for good
			case r.EventType == "asset.pending_payment" && n == 2:
				time.Sleep(2500 * time.Millisecond) // the replayed send is slow
			case r.EventType == "asset.ready" && n == 1:
				return svixfake.Reply{Status: http.StatusServiceUnavailable}, true // backs off 1s
			}
			return svixfake.Reply{}, false
		})
		b.start(t)
		first := b.emit(t, outbox.AssetPendingPayment("acme", "asset_1"))
		waitFor(t, 20*time.Second, "the first row to fail", func() bool { return b.row(t, first).FailedAt != nil })
		second := b.emit(t, outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment))
		waitFor(t, 20*time.Second, "the later row's first attempt", func() bool { return b.row(t, second).Attempts == 1 })
		if _, err := b.pool.Exec(ctx, `SELECT outbox_replay($1)`, first); err != nil {
			t.Fatal(err)
		}
		b.waitDelivered(t, 2)
		if got := acceptedOrder(t, b.fake)["asset_1"]; len(got) != 2 || got[0] != "asset.pending_payment" {
			t.Errorf("svix accepted %v, want the replayed pending_payment before the ready that was backing off", got)
		}
	})

	t.Run("FailedRowBlocksItsKeyUntilReplayed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{config: func(c *dispatch.Config) { c.BlockOnFailure = true }})
		b.fake.SetInterceptor(failFirstOfType("asset.pending_payment", svixfake.Reply{Status: http.StatusUnprocessableEntity}))
		b.start(t)
		first := b.emit(t, outbox.AssetPendingPayment("acme", "asset_1"))
		second := b.emit(t, outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment))
		other := b.emit(t, outbox.AssetReady("acme", "asset_2", outbox.PreviousStateProcessing))
		waitFor(t, 20*time.Second, "the first row to fail", func() bool { return b.row(t, first).FailedAt != nil })
		// Another key is not held up.
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, other)
		// The held-back row has looked at least twice and was not sent.
		waitFor(t, 20*time.Second, "the held-back row to recheck", func() bool {
			var snoozes int
			_ = b.pool.QueryRow(ctx, `SELECT coalesce((j.metadata ->> 'snoozes')::int, 0) FROM river_job j
				JOIN outbox o ON o.job_id = j.id WHERE o.id = $1`, second).Scan(&snoozes)
			return snoozes >= 2
		})
		if r := b.row(t, second); r.DeliveredAt != nil || len(b.createsFor(r.key())) != 0 {
			t.Fatalf("row sent while an earlier row of its key was failed: %+v", r)
		}

		if _, err := b.pool.Exec(ctx, `SELECT outbox_replay($1)`, first); err != nil {
			t.Fatal(err)
		}
		b.waitDelivered(t, 3)
		if got := acceptedOrder(t, b.fake)["asset_1"]; len(got) != 2 || got[0] != "asset.pending_payment" {
			t.Errorf("svix accepted %v for asset_1, want pending_payment then ready", got)
		}
	})

	t.Run("OffSendsWithoutWaiting", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{config: func(c *dispatch.Config) {
			c.Ordering = dispatch.OrderOff
			c.BackoffMin = 2 * time.Second
			c.BackoffMax = 2 * time.Second
		}})
		b.fake.SetInterceptor(failFirstOfType("asset.pending_payment", svixfake.Reply{Status: http.StatusServiceUnavailable}))
		b.start(t)
		b.emit(t, outbox.AssetPendingPayment("acme", "asset_1"))
		b.emit(t, outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment))
		b.waitDelivered(t, 2)
		if got := acceptedOrder(t, b.fake)["asset_1"]; len(got) != 2 || got[0] != "asset.ready" {
			t.Errorf("with ordering off svix accepted %v; want ready first (its predecessor was backing off)", got)
		}
	})
}

// TestOrderSeqFollowsCommitOrder checks the numbering the relay relies on:
// a second transaction writing the same asset waits for the first, so its
// number is higher exactly when it commits later.
func TestOrderSeqFollowsCommitOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()

	first, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx) //nolint:errcheck
	firstID, err := outbox.Emit(ctx, first, outbox.AssetPendingPayment("acme", "asset_1"))
	if err != nil {
		t.Fatal(err)
	}

	secondID := make(chan int64, 1)
	go func() {
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Error(err)
			secondID <- 0
			return
		}
		id, err := outbox.Emit(ctx, tx, outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment))
		if err == nil {
			err = tx.Commit(ctx)
		}
		if err != nil {
			t.Error(err)
		}
		secondID <- id
	}()
	// The second writer is blocked on the asset's key.
	waitFor(t, 10*time.Second, "the second writer to wait for the first", func() bool {
		var waiting int
		_ = b.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO outbox%'`).Scan(&waiting)
		return waiting > 0
	})
	// Another asset is not held up.
	b.emit(t, outbox.AssetFailed("acme", "asset_2"))

	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	id2 := <-secondID
	var seq1, seq2 int64
	_ = b.pool.QueryRow(ctx, `SELECT order_seq FROM outbox WHERE id = $1`, firstID).Scan(&seq1)
	_ = b.pool.QueryRow(ctx, `SELECT order_seq FROM outbox WHERE id = $1`, id2).Scan(&seq2)
	if !(seq1 < seq2) {
		t.Errorf("order_seq %d (committed first), %d (committed second): want increasing", seq1, seq2)
	}
}
