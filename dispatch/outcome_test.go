package dispatch_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/outbox"
)

// createsFor returns the message-create requests Svix saw for a row's key.
func (b *bundle) createsFor(key string) []svixfake.Request {
	var out []svixfake.Request
	for _, r := range b.fake.Requests() {
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/msg") && r.IdempotencyKey == key {
			out = append(out, r)
		}
	}
	return out
}

// failFirst answers the first n creates of rows of app with reply.
func failFirst(n int64, app string, reply svixfake.Reply) svixfake.Interceptor {
	var seen atomic.Int64
	return func(r *svixfake.Request) (svixfake.Reply, bool) {
		if r.Method != http.MethodPost || r.AppID != app || !strings.HasSuffix(r.Path, "/msg") {
			return svixfake.Reply{}, false
		}
		if seen.Add(1) > n {
			return svixfake.Reply{}, false
		}
		return reply, true
	}
}

func TestOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("TransientErrorsAreRetriedThenDelivered", func(t *testing.T) {
		t.Parallel()
		for name, reply := range map[string]svixfake.Reply{
			"503":     {Status: http.StatusServiceUnavailable},
			"500":     {Status: http.StatusInternalServerError},
			"dropped": {Drop: true},
		} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, setupOpts{})
				b.fake.SetInterceptor(failFirst(2, "acme", reply))
				b.start(t)
				id := b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_1"))
				b.waitDelivered(t, 1)
				b.assertDeliveredOnce(t, id)
				r := b.row(t, id)
				// net/http itself resends a request whose reused connection
				// dropped (it carries an Idempotency-Key), so a drop may
				// cost no attempt; an answered 5xx always costs one.
				if want := 2; r.Attempts != want && (name != "dropped" || r.Attempts > want) {
					t.Errorf("attempts = %d, want %d failed attempts recorded", r.Attempts, want)
				}
				if r.LastError == nil || r.FailedAt != nil {
					t.Errorf("last_error = %v, failed_at = %v: want the last transient error kept and failed_at null", r.LastError, r.FailedAt)
				}
				if got := len(b.createsFor(r.key())); got < 3 {
					t.Errorf("svix saw %d creates for the row, want 3", got)
				}
			})
		}
	})

	t.Run("TimeoutIsRetried", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		var first atomic.Bool
		b.fake.SetInterceptor(func(r *svixfake.Request) (svixfake.Reply, bool) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/msg") && first.CompareAndSwap(false, true) {
				time.Sleep(3 * time.Second) // beyond the sender's 2 s timeout
			}
			return svixfake.Reply{}, false
		})
		b.start(t)
		id := b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_1"))
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, id)
		if r := b.row(t, id); r.Attempts != 1 || r.LastError == nil {
			t.Errorf("attempts = %d, last_error = %v: want the timeout recorded as one attempt", r.Attempts, r.LastError)
		}
	})

	t.Run("ConflictOnEventIDIsDelivered", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		id := b.emit(t, outbox.AssetReady("acme", "asset_1", outbox.PreviousStateProcessing))
		r := b.row(t, id)

		// Svix already holds the row's message, sent under another
		// idempotency key (as after its 12 h key window).
		client, err := svix.New(svixfake.DefaultToken, &svix.SvixOptions{ServerUrl: mustURL(t, b.fake.URL()), RetrySchedule: &[]time.Duration{}})
		if err != nil {
			t.Fatal(err)
		}
		key, app, other := r.key(), "acme", "earlier-key"
		prior, err := client.Message.Create(ctx, app, models.MessageIn{
			EventType: r.EventType, EventId: &key,
			Payload:     map[string]any{"type": r.EventType, "data": map[string]any{"entity_id": "asset_1", "asset_id": "asset_1", "previous_state": "processing"}},
			Application: &models.ApplicationIn{Name: app, Uid: &app},
		}, &svix.MessageCreateOptions{IdempotencyKey: &other})
		if err != nil {
			t.Fatal(err)
		}

		b.start(t)
		b.waitDelivered(t, 1)
		got := b.row(t, id)
		if got.SvixMsgID == nil || *got.SvixMsgID != prior.Id {
			t.Errorf("svix_message_id = %v, want the existing message %s", got.SvixMsgID, prior.Id)
		}
		if got.Attempts != 0 || got.FailedAt != nil {
			t.Errorf("attempts = %d, failed_at = %v: a 409 is not a failure", got.Attempts, got.FailedAt)
		}
		if n := b.fake.MessageCount(); n != 1 {
			t.Errorf("svix holds %d messages, want 1", n)
		}
	})

	t.Run("RateLimitedWaitsForRetryAfter", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.fake.SetInterceptor(failFirst(1, "acme", svixfake.Reply{
			Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": []string{"2"}},
		}))
		b.start(t)
		id := b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_1"))
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, id)
		r := b.row(t, id)
		if r.Attempts != 0 {
			t.Errorf("attempts = %d: a 429 is not a failed attempt", r.Attempts)
		}
		creates := b.createsFor(r.key())
		if len(creates) != 2 || creates[0].Status != http.StatusTooManyRequests {
			t.Fatalf("creates = %d (first status %d), want a 429 then an accepted retry", len(creates), creates[0].Status)
		}
		if gap := creates[1].Received.Sub(creates[0].Received); gap < 2*time.Second {
			t.Errorf("retried %s after a 429 with Retry-After: 2, want no sooner than 2s", gap)
		}
	})

	t.Run("RejectedTokenIsRetriedAndUnready", func(t *testing.T) {
		t.Parallel()
		for name, status := range map[string]int{"401": http.StatusUnauthorized, "403": http.StatusForbidden} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, setupOpts{})
				var rejecting atomic.Bool
				rejecting.Store(true)
				b.fake.SetInterceptor(func(r *svixfake.Request) (svixfake.Reply, bool) {
					if rejecting.Load() && strings.HasPrefix(r.Path, "/api/v1/app") {
						return svixfake.Reply{Status: status}, true
					}
					return svixfake.Reply{}, false
				})
				relay := b.start(t)
				id := b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_1"))
				waitFor(t, 20*time.Second, "two rejected attempts", func() bool { return b.row(t, id).Attempts >= 2 })
				if err := relay.Ready(ctx); err == nil {
					t.Error("ready while svix rejects the token")
				}
				if r := b.row(t, id); r.FailedAt != nil || r.LastError == nil || !strings.Contains(*r.LastError, "token") {
					t.Errorf("failed_at = %v, last_error = %v: a rejected token must not fail the row", r.FailedAt, r.LastError)
				}

				rejecting.Store(false) // the token is rotated
				b.waitDelivered(t, 1)
				b.assertDeliveredOnce(t, id)
				if err := relay.Ready(ctx); err != nil {
					t.Errorf("not ready after svix accepted the token: %v", err)
				}
			})
		}
	})

	t.Run("PermanentRefusalsFailTheRowOnly", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			status int
			code   string
		}{
			{http.StatusBadRequest, "bad_request"},
			{http.StatusNotFound, "not_found"},
			{http.StatusRequestEntityTooLarge, "payload_too_large"},
			{http.StatusUnprocessableEntity, "validation"},
		} {
			t.Run(http.StatusText(tc.status), func(t *testing.T) {
				t.Parallel()
				b := setup(t, setupOpts{})
				b.fake.FailApp("doomed", tc.status, tc.code, "refused for the test")
				b.start(t)
				bad := b.emit(t, outbox.CutCompleted("doomed", "cut_1", "asset_1"))
				good := b.emit(t, outbox.CutCompleted("fine", "cut_2", "asset_2"))
				waitFor(t, 20*time.Second, "the refused row to fail", func() bool { return b.row(t, bad).FailedAt != nil })
				b.waitDelivered(t, 1)
				b.assertDeliveredOnce(t, good)

				r := b.row(t, bad)
				if r.LastError == nil || !strings.Contains(*r.LastError, tc.code) || !strings.Contains(*r.LastError, "refused for the test") {
					t.Errorf("last_error = %v, want svix's code and detail", r.LastError)
				}
				if r.DeliveredAt != nil || r.Attempts != 1 {
					t.Errorf("delivered_at = %v, attempts = %d: want failed after one attempt", r.DeliveredAt, r.Attempts)
				}
				if n := len(b.createsFor(r.key())); n != 1 {
					t.Errorf("svix saw %d creates for a refused row, want 1 (no retry)", n)
				}
			})
		}
	})

	t.Run("TransientErrorsPastMaxAgeFail", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{config: func(c *dispatch.Config) { c.MaxAge = 2 * time.Second }})
		b.fake.SetFailureRate(1, http.StatusBadGateway)
		b.start(t)
		id := b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_1"))
		waitFor(t, 20*time.Second, "the row to fail", func() bool { return b.row(t, id).FailedAt != nil })
		r := b.row(t, id)
		if r.LastError == nil || !strings.Contains(*r.LastError, "max age") || r.DeliveredAt != nil {
			t.Errorf("last_error = %v, attempts = %d: want a failure naming the max age", ptrString(r.LastError), r.Attempts)
		}
	})
}

// TestIdempotencyWindow checks the re-send of a row whose first attempt is
// older than Svix's idempotency window: Svix no longer replays the key's
// answer and (hosted) no longer refuses the eventId, so the relay looks the
// message up by its eventId first and marks the row delivered if Svix has
// it, instead of creating a second message.
func TestIdempotencyWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{
		fake:   svixfake.Config{EventIDTTL: time.Millisecond},
		config: func(c *dispatch.Config) { c.IdempotencyWindow = time.Hour },
	})
	seen := b.emit(t, outbox.AssetReady("acme", "asset_1", outbox.PreviousStateProcessing))
	recent := b.emit(t, outbox.AssetReady("acme", "asset_2", outbox.PreviousStateProcessing))
	never := b.emit(t, outbox.AssetFailed("acme", "asset_3"))

	// Svix accepted the first two rows long ago, but their answers were
	// lost: each row counts one failed attempt.
	client, err := svix.New(svixfake.DefaultToken, &svix.SvixOptions{ServerUrl: mustURL(t, b.fake.URL()), RetrySchedule: &[]time.Duration{}})
	if err != nil {
		t.Fatal(err)
	}
	prior := map[int64]string{}
	for _, id := range []int64{seen, recent} {
		r := b.row(t, id)
		key, app := r.key(), "acme"
		m, err := client.Message.Create(ctx, app, models.MessageIn{
			EventType: r.EventType, EventId: &key, Payload: map[string]any{"type": r.EventType, "data": map[string]any{}},
			Application: &models.ApplicationIn{Name: app, Uid: &app},
		}, &svix.MessageCreateOptions{IdempotencyKey: &key})
		if err != nil {
			t.Fatal(err)
		}
		prior[id] = m.Id
	}
	if _, err := b.pool.Exec(ctx, `UPDATE outbox SET attempts = 1, last_error = 'svix request failed: connection reset',
		first_attempt_at = CASE WHEN id = $1 THEN now() - interval '13 hours' ELSE now() - interval '1 minute' END
		WHERE id IN ($1, $2)`, seen, recent); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	b.waitDelivered(t, 3)
	if got := b.row(t, seen); got.SvixMsgID == nil || *got.SvixMsgID != prior[seen] {
		t.Errorf("row first sent 13 h ago: svix_message_id = %v, want the message Svix had, %s", ptrString(got.SvixMsgID), prior[seen])
	}
	if n := len(b.createsFor(b.row(t, seen).key())); n != 1 {
		t.Errorf("row first sent 13 h ago: %d creates, want only the first (looked up, not re-sent)", n)
	}
	// Inside the window the key still protects the re-send: it is sent
	// again and Svix replays its first answer.
	if got := b.row(t, recent); got.SvixMsgID == nil || *got.SvixMsgID != prior[recent] {
		t.Errorf("row first sent a minute ago: svix_message_id = %v, want %s (replayed by its key)", ptrString(got.SvixMsgID), prior[recent])
	}
	b.assertDeliveredOnce(t, never)
	if n := b.fake.MessageCount(); n != 3 {
		t.Errorf("svix holds %d messages, want 3: one per row", n)
	}
}

// TestMaxAgeCountsFromReplay checks that a replayed row's max age starts
// at the replay: an old row replayed after failing, which then meets one
// 503, is retried and delivered, not failed at once.
func TestMaxAgeCountsFromReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{config: func(c *dispatch.Config) { c.MaxAge = time.Hour }})
	id := b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_1"))
	if _, err := b.pool.Exec(ctx, `UPDATE outbox SET created_at = now() - interval '5 hours', failed_at = now() - interval '3 hours',
		attempts = 4, last_error = 'gave up' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `SELECT outbox_replay($1)`, id); err != nil {
		t.Fatal(err)
	}
	b.fake.SetInterceptor(failFirst(1, "acme", svixfake.Reply{Status: http.StatusServiceUnavailable}))
	b.start(t)
	b.waitDelivered(t, 1)
	b.assertDeliveredOnce(t, id)
	if r := b.row(t, id); r.Attempts != 1 || r.FailedAt != nil {
		t.Errorf("attempts = %d, failed_at = %v: want one failed attempt, then delivered", r.Attempts, r.FailedAt)
	}
}

func ptr[T any](v T) *T { return &v }

func TestReplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("FailedRowIsSentAgainWithItsKey", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.fake.FailApp("acme", http.StatusUnprocessableEntity, "validation", "bad for now")
		b.start(t)
		id := b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_1"))
		waitFor(t, 20*time.Second, "the row to fail", func() bool { return b.row(t, id).FailedAt != nil })
		key := b.row(t, id).key()

		b.fake.ResetFaults()
		var existed bool
		if err := b.pool.QueryRow(ctx, `SELECT outbox_replay($1)`, id).Scan(&existed); err != nil || !existed {
			t.Fatalf("outbox_replay = %v, %v", existed, err)
		}
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, id)
		if got := b.row(t, id).key(); got != key {
			t.Errorf("replay changed the key from %s to %s", key, got)
		}
	})

	t.Run("UnknownRow", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		var existed bool
		if err := b.pool.QueryRow(ctx, `SELECT outbox_replay(424242)`).Scan(&existed); err != nil || existed {
			t.Fatalf("outbox_replay(unknown) = %v, %v; want false", existed, err)
		}
	})

	t.Run("DeliveredRowNeedsForce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.start(t)
		id := b.emit(t, outbox.RenderCompleted("acme", "render_1", "asset_1"))
		b.waitDelivered(t, 1)
		first := b.row(t, id)

		var existed bool
		if err := b.pool.QueryRow(ctx, `SELECT outbox_replay($1)`, id).Scan(&existed); err != nil || !existed {
			t.Fatalf("outbox_replay = %v, %v", existed, err)
		}
		if r := b.row(t, id); r.DeliveredAt == nil || *r.SvixMsgID != *first.SvixMsgID || r.Resends != 0 {
			t.Fatalf("a plain replay changed a delivered row: %+v", r)
		}

		if err := b.pool.QueryRow(ctx, `SELECT outbox_replay($1, force => true)`, id).Scan(&existed); err != nil || !existed {
			t.Fatalf("outbox_replay(force) = %v, %v", existed, err)
		}
		waitFor(t, 20*time.Second, "the resend", func() bool {
			r := b.row(t, id)
			return r.Resends == 1 && r.DeliveredAt != nil
		})
		second := b.row(t, id)
		if second.key() == first.key() || !strings.HasSuffix(second.key(), "_r1") {
			t.Errorf("resend key %s, first key %s: want a new key ending _r1", second.key(), first.key())
		}
		if *second.SvixMsgID == *first.SvixMsgID || b.fake.MessageCount() != 2 {
			t.Errorf("resend gave message %s (first %s), svix holds %d: want a second message", *second.SvixMsgID, *first.SvixMsgID, b.fake.MessageCount())
		}
	})
}

func ptrString(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestStaleClaimIsHandedBack checks the sweep: a row handed to a job that
// no longer exists (deleted by hand, say) is handed back and delivered,
// under its own key.
func TestStaleClaimIsHandedBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{config: func(c *dispatch.Config) { c.StaleAfter = 2 * time.Second }})
	id := b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_1"))
	if _, err := b.pool.Exec(ctx, `SELECT outbox_sequence()`); err != nil {
		t.Fatal(err)
	}
	// Claimed an hour ago by a job that is gone.
	if _, err := b.pool.Exec(ctx, `UPDATE outbox SET enqueued_at = now() - interval '1 hour', job_id = 424242 WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	b.waitDelivered(t, 1)
	b.assertDeliveredOnce(t, id)
}
