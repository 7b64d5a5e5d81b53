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
		// The failure was recorded in the transaction that would have
		// claimed the next row of the key: it was not.
		var claimed bool
		if err := b.pool.QueryRow(ctx, `SELECT enqueued_at IS NOT NULL OR job_id IS NOT NULL FROM outbox WHERE id = $1`, second).Scan(&claimed); err != nil {
			t.Fatal(err)
		}
		if r := b.row(t, second); claimed || r.DeliveredAt != nil || len(b.createsFor(r.key())) != 0 {
			t.Fatalf("row claimed or sent while an earlier row of its key was failed: claimed=%v %+v", claimed, r)
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

// TestProducersNeverWait checks that producers take no lock on a key: a
// transaction holding a row of an asset open does not hold up another
// writer of that asset, producers writing several assets in opposite
// orders never deadlock, and the relay still delivers each asset's rows in
// commit order (commit_seq).
func TestProducersNeverWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("AnOpenTransactionHoldsNoOneUp", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.start(t)
		first, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Rollback(ctx) //nolint:errcheck
		firstID, err := outbox.Emit(ctx, first, outbox.AssetPendingPayment("acme", "asset_1"))
		if err != nil {
			t.Fatal(err)
		}
		var firstPID int
		if err := first.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&firstPID); err != nil {
			t.Fatal(err)
		}

		// A second writer of the same asset commits while the first is
		// open, with a lock timeout that would fail it if it waited.
		second, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Rollback(ctx) //nolint:errcheck
		if _, err := second.Exec(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
			t.Fatal(err)
		}
		secondID, err := outbox.Emit(ctx, second, outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment))
		if err != nil {
			t.Fatalf("second writer of an asset while the first is open: %v", err)
		}
		if err := second.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		// The first writer holds no lock another producer could wait on:
		// its own transaction id, and shared table locks (RowShareLock on
		// the event catalog is the foreign key's KEY SHARE, which other
		// producers share).
		var locks int
		if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE pid = $1 AND NOT (locktype = 'virtualxid' OR locktype = 'transactionid'
			                        OR (locktype = 'relation' AND mode IN ('RowExclusiveLock', 'AccessShareLock', 'RowShareLock')))`, firstPID).Scan(&locks); err != nil {
			t.Fatal(err)
		}
		if locks != 0 {
			var what string
			_ = b.pool.QueryRow(ctx, `SELECT string_agg(locktype || ' ' || mode || ' ' || coalesce(relation::regclass::text, ''), ', ') FROM pg_locks WHERE pid = $1`, firstPID).Scan(&what)
			t.Errorf("the open producer holds %d locks beyond its own transaction and table locks: %s", locks, what)
		}
		// Committed second, so it goes first.
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, secondID)
		if err := first.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		b.waitDelivered(t, 2)
		b.assertDeliveredOnce(t, firstID)
		if got := acceptedOrder(t, b.fake)["asset_1"]; len(got) != 2 || got[0] != "asset.ready" {
			t.Errorf("svix accepted %v, want commit order: ready (committed first), then pending_payment", got)
		}
	})

	t.Run("OppositeOrdersNeverDeadlock", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.start(t)
		const producers, rounds, assets = 6, 15, 4
		var wg sync.WaitGroup
		errs := make(chan error, producers*rounds)
		for p := range producers {
			wg.Go(func() {
				for round := range rounds {
					// Half the producers write assets 0..3, half 3..0, each
					// in one transaction that stays open across the rows.
					order := []int{0, 1, 2, 3}
					if p%2 == 1 {
						order = []int{3, 2, 1, 0}
					}
					tx, err := b.pool.Begin(ctx)
					if err != nil {
						errs <- err
						return
					}
					if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '5s'`); err != nil {
						errs <- err
						_ = tx.Rollback(ctx)
						return
					}
					if p%3 == 0 { // EmitBatch
						var evs []outbox.Event
						for _, a := range order {
							evs = append(evs, outbox.RenderCompleted("acme", fmt.Sprintf("render_%d_%d_%d", p, round, a), fmt.Sprintf("asset_%d", a)))
						}
						if _, err := outbox.EmitBatch(ctx, tx, evs); err != nil {
							errs <- err
						}
					} else { // plain SQL, one row per statement
						for _, a := range order {
							if _, err := tx.Exec(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'render.completed',
								jsonb_build_object('entity_id', $1::text, 'asset_id', $2::text))`,
								fmt.Sprintf("render_%d_%d_%d", p, round, a), fmt.Sprintf("asset_%d", a)); err != nil {
								errs <- err
								break
							}
						}
					}
					if err := tx.Commit(ctx); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("producer: %v", err)
		}
		b.waitDelivered(t, producers*rounds*assets)
		// Each asset's rows reached Svix in commit_seq order.
		rows, err := b.pool.Query(ctx, `SELECT data ->> 'asset_id', data ->> 'entity_id' FROM outbox ORDER BY commit_seq`)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]string{}
		for rows.Next() {
			var asset, entity string
			if err := rows.Scan(&asset, &entity); err != nil {
				t.Fatal(err)
			}
			want[asset] = append(want[asset], entity)
		}
		got := map[string][]string{}
		for _, m := range b.fake.AllMessages() {
			var p struct {
				Data struct {
					AssetID  string `json:"asset_id"`
					EntityID string `json:"entity_id"`
				} `json:"data"`
			}
			if err := jsonUnmarshal(m.Payload, &p); err != nil {
				t.Fatal(err)
			}
			got[p.Data.AssetID] = append(got[p.Data.AssetID], p.Data.EntityID)
		}
		for asset, w := range want {
			if strings.Join(got[asset], ",") != strings.Join(w, ",") {
				t.Errorf("%s: svix accepted\n%v\nwant commit_seq order\n%v", asset, got[asset], w)
			}
		}
	})
}
