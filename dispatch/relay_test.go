package dispatch_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/msgkey"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/outbox"
)

// bundle is what a dispatch test works with.
type bundle struct {
	schema pgtest.Schema
	pool   *pgxpool.Pool
	fake   *svixfake.Server
	sender *dispatch.SvixSender
	cfg    dispatch.Config
}

type setupOpts struct {
	fake   svixfake.Config
	token  string
	config func(*dispatch.Config)
}

func setup(t *testing.T, opts setupOpts) *bundle {
	t.Helper()
	s, pool := pgtest.Migrated(t)
	fake := svixfake.NewStarted(t, opts.fake)
	token := opts.token
	if token == "" {
		token = svixfake.DefaultToken
	}
	sender, err := dispatch.NewSvixSender(dispatch.SvixConfig{
		Token:     token,
		ServerURL: fake.URL() + "/", // a trailing slash must not break it
		Timeout:   2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := dispatch.Config{
		Concurrency:  20,
		JobTimeout:   5 * time.Second,
		RescueAfter:  6 * time.Second,
		BackoffMin:   50 * time.Millisecond,
		BackoffMax:   400 * time.Millisecond,
		PollInterval: 200 * time.Millisecond,
		Logger:       zaptest.NewLogger(t),
	}
	if opts.config != nil {
		opts.config(&cfg)
	}
	return &bundle{schema: s, pool: pool, fake: fake, sender: sender, cfg: cfg}
}

// start runs a relay on the bundle until the test ends.
func (b *bundle) start(t *testing.T) *dispatch.Relay {
	t.Helper()
	relay, err := dispatch.New(b.pool, b.sender, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop within 30s")
		}
	})
	return relay
}

// row is an outbox row as on-call reads it.
type row struct {
	ID          int64
	CreatedAt   time.Time
	AppID       string
	EventType   string
	Data        json.RawMessage
	Attempts    int
	DeliveredAt *time.Time
	SvixMsgID   *string
	FailedAt    *time.Time
	LastError   *string
	Resends     int
}

func (r row) key() string { return msgkey.Format(r.ID, r.CreatedAt, r.Resends) }

func (b *bundle) row(t *testing.T, id int64) row {
	t.Helper()
	var r row
	err := b.pool.QueryRow(context.Background(), `
		SELECT id, created_at, app_id, event_type, data, attempts, delivered_at, svix_message_id, failed_at, last_error, resends
		  FROM outbox WHERE id = $1`, id).Scan(
		&r.ID, &r.CreatedAt, &r.AppID, &r.EventType, &r.Data, &r.Attempts, &r.DeliveredAt, &r.SvixMsgID, &r.FailedAt, &r.LastError, &r.Resends)
	if err != nil {
		t.Fatalf("read outbox row %d: %v", id, err)
	}
	return r
}

// waitFor polls the real state until cond holds, failing after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *bundle) count(t *testing.T, where string) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox WHERE "+where).Scan(&n); err != nil {
		t.Fatalf("count outbox rows where %s: %v", where, err)
	}
	return n
}

func (b *bundle) waitDelivered(t *testing.T, n int) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%d delivered rows", n), func() bool {
		return b.count(t, "delivered_at IS NOT NULL") >= n
	})
}

func (b *bundle) emit(t *testing.T, ev outbox.Event) int64 {
	t.Helper()
	id, err := outbox.Emit(context.Background(), b.pool, ev)
	if err != nil {
		t.Fatalf("emit: %v", err)
	}
	return id
}

// assertDeliveredOnce checks that the row is delivered and that Svix holds
// exactly one message for it, sent with the row's key, carrying exactly
// {"type","data"} with data equal to the row's.
func (b *bundle) assertDeliveredOnce(t *testing.T, id int64) {
	t.Helper()
	r := b.row(t, id)
	if r.DeliveredAt == nil || r.SvixMsgID == nil || r.FailedAt != nil {
		t.Fatalf("row %d: delivered_at=%v svix_message_id=%v failed_at=%v, want delivered", id, r.DeliveredAt, r.SvixMsgID, r.FailedAt)
	}
	var found []svixfake.Message
	for _, m := range b.fake.Messages(r.AppID) {
		if m.EventID == r.key() {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("row %d: svix holds %d messages with eventId %s, want 1", id, len(found), r.key())
	}
	m := found[0]
	if m.ID != *r.SvixMsgID {
		t.Errorf("row %d: svix_message_id %s, svix has %s", id, *r.SvixMsgID, m.ID)
	}
	if m.IdempotencyKey != r.key() || m.EventType != r.EventType {
		t.Errorf("row %d: sent with key %q type %q, want %q %q", id, m.IdempotencyKey, m.EventType, r.key(), r.EventType)
	}
	var payload map[string]json.RawMessage
	if err := json.Unmarshal(m.Payload, &payload); err != nil {
		t.Fatalf("row %d: payload %s: %v", id, m.Payload, err)
	}
	if len(payload) != 2 || string(payload["type"]) != fmt.Sprintf("%q", r.EventType) {
		t.Errorf("row %d: payload %s, want exactly type and data", id, m.Payload)
	}
	if !jsonEqual(t, payload["data"], r.Data) {
		t.Errorf("row %d: payload data %s, row data %s", id, payload["data"], r.Data)
	}
}

// jsonEqual compares JSON values exactly, numbers digit for digit.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	norm := func(raw []byte) string {
		var v any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
		out, _ := json.Marshal(v)
		return string(out)
	}
	return norm(a) == norm(b)
}

func TestRelayDelivers(t *testing.T) {
	t.Parallel()

	t.Run("EveryWayARowIsWritten", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		ctx := context.Background()

		// Written while no relay runs.
		before := b.emit(t, outbox.CutCompleted("acme", "cut_1", "asset_1"))

		b.start(t)

		// The Go API inside a transaction, a batch, and plain SQL.
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		inTx, err := outbox.Emit(ctx, tx, outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment))
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		batch, err := outbox.EmitBatch(ctx, b.pool, []outbox.Event{
			outbox.CutFailed("acme", "cut_2", "asset_1"),
			outbox.RenderCompleted("globex", "render_1", "asset_9"),
			outbox.RenderFailed("globex", "render_2", "asset_9"),
			outbox.RenderCancelled("globex", "render_3", "asset_9"),
			outbox.AssetPendingPayment("globex", "asset_9"),
			outbox.AssetFailed("initech", "asset_7"),
		})
		if err != nil {
			t.Fatal(err)
		}
		var bySQL int64
		err = b.pool.QueryRow(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ($1, $2, $3::jsonb) RETURNING id`,
			"initech", "asset.ready", `{"entity_id": "asset_7", "asset_id": "asset_7", "previous_state": "processing", "extra": {"k": [1, 2]}}`).Scan(&bySQL)
		if err != nil {
			t.Fatal(err)
		}

		ids := append([]int64{before, inTx, bySQL}, batch...)
		b.waitDelivered(t, len(ids))
		for _, id := range ids {
			b.assertDeliveredOnce(t, id)
		}
		if n := b.fake.MessageCount(); n != len(ids) {
			t.Errorf("svix accepted %d messages, want %d", n, len(ids))
		}
		// Apps were created on the fly by the messages themselves.
		if n := len(b.fake.Apps()); n != 3 {
			t.Errorf("svix has %d apps, want 3", n)
		}
	})

	t.Run("NumbersAndTextSurviveExactly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.start(t)
		ev, err := outbox.NewEvent("acme", outbox.TypeRenderCompleted, map[string]any{
			"entity_id": "render_é漢字", "asset_id": "asset_1",
			"big": json.Number("9007199254740993"), "exp": json.Number("1.50e3"), "text": "naïve – ☃ <&>",
		})
		if err != nil {
			t.Fatal(err)
		}
		id := b.emit(t, ev)
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, id)
		m := b.fake.AllMessages()[0]
		if !strings.Contains(string(m.Payload), "9007199254740993") {
			t.Errorf("payload %s lost the big integer's digits", m.Payload)
		}
	})

	t.Run("LowerIDCommittedLater", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.start(t)
		ctx := context.Background()

		early, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer early.Rollback(ctx) //nolint:errcheck
		low, err := outbox.Emit(ctx, early, outbox.CutCompleted("acme", "cut_low", "asset_1"))
		if err != nil {
			t.Fatal(err)
		}
		high := b.emit(t, outbox.CutCompleted("acme", "cut_high", "asset_2"))
		if high <= low {
			t.Fatalf("ids %d, %d: want the second transaction's id higher", low, high)
		}
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, high)

		if err := early.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		b.waitDelivered(t, 2)
		b.assertDeliveredOnce(t, low)
	})

	t.Run("RolledBackTransactionSendsNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.start(t)
		ctx := context.Background()
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := outbox.Emit(ctx, tx, outbox.CutCompleted("acme", "cut_x", "asset_x")); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		// A later committed row is delivered; the rolled-back one never existed.
		id := b.emit(t, outbox.CutCompleted("acme", "cut_y", "asset_y"))
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, id)
		if n := b.fake.MessageCount(); n != 1 {
			t.Errorf("svix accepted %d messages, want 1", n)
		}
	})

	t.Run("PollOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{config: func(c *dispatch.Config) { c.PollOnly = true; c.PollInterval = 50 * time.Millisecond }})
		b.start(t)
		id := b.emit(t, outbox.AssetFailed("acme", "asset_1"))
		b.waitDelivered(t, 1)
		b.assertDeliveredOnce(t, id)
	})

	t.Run("TwoRelaysShareTheWork", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		b.fake.SetLatency(2*time.Millisecond, 3*time.Millisecond)
		b.start(t)
		b.start(t)
		const n = 400
		evs := make([]outbox.Event, n)
		for i := range evs {
			evs[i] = outbox.CutCompleted(fmt.Sprintf("app-%d", i%7), fmt.Sprintf("cut_%d", i), fmt.Sprintf("asset_%d", i))
		}
		var wg sync.WaitGroup
		ids := make([][]int64, 4)
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < n; i += 4 {
					id, err := outbox.Emit(context.Background(), b.pool, evs[i])
					if err != nil {
						t.Error(err)
						return
					}
					ids[w] = append(ids[w], id)
				}
			})
		}
		wg.Wait()
		b.waitDelivered(t, n)
		for _, part := range ids {
			for _, id := range part {
				b.assertDeliveredOnce(t, id)
			}
		}
		if got := b.fake.MessageCount(); got != n {
			t.Errorf("svix accepted %d messages for %d rows", got, n)
		}
	})
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }
