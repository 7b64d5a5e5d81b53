package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/msgkey"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/status"
	"github.com/mediaplatform/relay/internal/testkit"
)

// insert writes one asset.ready row for app and returns its id; set, when
// not empty, then sets relay-owned columns (SQL after SET).
func insert(t *testing.T, pool *pgxpool.Pool, app, set string) int64 {
	t.Helper()
	return testkit.InsertRow(t, pool, app, "asset.ready", `{"entity_id":"a1","asset_id":"a1","previous_state":"processing"}`, set)
}

func TestRead(t *testing.T) {
	t.Parallel()

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		rep, err := status.Read(t.Context(), pool, status.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Pending+rep.InFlight+rep.DeliveredLastHour+rep.Failed != 0 || rep.Oldest != nil || len(rep.Failures) != 0 {
			t.Errorf("empty outbox: %+v", rep)
		}
		b, _ := json.Marshal(rep)
		if !strings.Contains(string(b), `"recent_failures":[]`) || !strings.Contains(string(b), `"oldest_undelivered":null`) {
			t.Errorf("JSON of an empty report: %s", b)
		}
	})

	t.Run("States", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		// The oldest undelivered row: in flight, with an error, written an hour ago.
		oldest := insert(t, pool, "acme", "created_at = now() - interval '1 hour', enqueued_at = now(), attempts = 3, last_error = 'svix 503'")
		insert(t, pool, "acme", "")
		insert(t, pool, "acme", "")
		insert(t, pool, "acme", "enqueued_at = now()")
		insert(t, pool, "acme", "enqueued_at = now(), delivered_at = now(), svix_message_id = 'msg_1'")
		insert(t, pool, "acme", "enqueued_at = now(), delivered_at = now() - interval '2 hours', svix_message_id = 'msg_2'")
		first := insert(t, pool, "acme", "enqueued_at = now(), failed_at = now() - interval '5 minutes', last_error = '422 first'")
		second := insert(t, pool, "beta", "enqueued_at = now(), failed_at = now() - interval '1 minute', last_error = '400 second'")

		rep, err := status.Read(t.Context(), pool, status.Options{Failures: 5})
		if err != nil {
			t.Fatal(err)
		}
		want := status.Report{Pending: 2, InFlight: 2, DeliveredLastHour: 1, Failed: 2}
		if rep.Pending != want.Pending || rep.InFlight != want.InFlight || rep.DeliveredLastHour != want.DeliveredLastHour || rep.Failed != want.Failed {
			t.Errorf("counts pending %d, in flight %d, delivered last hour %d, failed %d; want %d %d %d %d",
				rep.Pending, rep.InFlight, rep.DeliveredLastHour, rep.Failed, want.Pending, want.InFlight, want.DeliveredLastHour, want.Failed)
		}
		o := rep.Oldest
		switch {
		case o == nil:
			t.Fatal("no oldest undelivered row")
		case o.ID != oldest || o.State != status.StateInFlight || o.Attempts != 3 || o.LastError != "svix 503":
			t.Errorf("oldest = %+v, want row %d in flight with 3 attempts and its error", *o, oldest)
		case o.Age() < 59*time.Minute || o.Age() > 2*time.Hour:
			t.Errorf("oldest age %s, want about 1h", o.Age())
		case o.Key != msgkey.Format(o.ID, o.CreatedAt, 0):
			t.Errorf("oldest key %q, want the row's idempotency key", o.Key)
		}
		if len(rep.Failures) != 2 || rep.Failures[0].ID != second || rep.Failures[1].ID != first {
			t.Fatalf("failures %+v, want rows %d then %d (newest first)", rep.Failures, second, first)
		}
		if f := rep.Failures[0]; f.State != status.StateFailed || f.LastError != "400 second" || f.AppID != "beta" || f.FailedAt == nil {
			t.Errorf("failure = %+v", f)
		}

		rep, err = status.Read(t.Context(), pool, status.Options{Failures: -1})
		if err != nil || len(rep.Failures) != 0 {
			t.Errorf("Failures -1: %d failures, %v; want none", len(rep.Failures), err)
		}
	})
}

func TestGet(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	id := insert(t, pool, "acme", "enqueued_at = now(), delivered_at = now(), svix_message_id = 'msg_1', resends = 2")
	row, err := status.Get(t.Context(), pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if row.State != status.StateDelivered || row.SvixMessageID != "msg_1" || row.Key != msgkey.Format(id, row.CreatedAt, 2) {
		t.Errorf("row = %+v", row)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := status.Get(ctx, pool, id+1000); !errors.Is(err, status.ErrNotFound) {
		t.Errorf("Get of an unknown id: %v, want ErrNotFound", err)
	}
}
