package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// A sharded product: two databases with an outbox each, one relay
// deployment per database, one Svix, each database's accounts in Svix
// applications of their own. Row ids overlap across the databases. Each
// relay delivers its own database's rows only; its metrics and log lines
// carry its database label.
//
// A row whose key (id and created_at) and app id match another database's
// row (an operator's mistake: one Svix application for two databases)
// meets Svix's deduplication. Once Svix's idempotency window (12 h hosted;
// 1 ms here) has passed, its create is answered 409 on the eventId: the
// relay looks the message up, sees that it is not its row's event and
// fails the row (relay status shows it) instead of recording it delivered.
// Within the window Svix replays the first answer and the
// relay cannot tell (README: one app id, one database).
func TestShards(t *testing.T) {
	t.Parallel()
	const n = 40
	dbA, poolA := pgtest.MigratedDatabase(t)
	dbB, poolB := pgtest.MigratedDatabase(t)
	fake := svixfake.NewStarted(t, svixfake.Config{IdempotencyTTL: time.Millisecond})
	insertShardRows(t, poolA, "eu", n)
	insertShardRows(t, poolB, "us", n)

	// The operator's mistake: one app id in both databases, and rows with
	// the same id and created_at (as after restoring one database's backup
	// into the other).
	shared := func(pool *pgxpool.Pool, entity string) (id int64) {
		t.Helper()
		if err := pool.QueryRow(t.Context(), `INSERT INTO outbox (app_id, event_type, data)
			VALUES ('shared', 'render.completed', jsonb_build_object('entity_id', $1::text, 'asset_id', 'asset_shared'))
			RETURNING id`, entity).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	idA, idB := shared(poolA, "render_a"), shared(poolB, "render_b")
	if idA != idB {
		t.Fatalf("ids %d and %d: the databases were meant to reuse ids", idA, idB)
	}
	var createdA time.Time
	if err := poolA.QueryRow(t.Context(), `SELECT created_at FROM outbox WHERE id = $1`, idA).Scan(&createdA); err != nil {
		t.Fatal(err)
	}
	if _, err := poolB.Exec(t.Context(), `UPDATE outbox SET created_at = $1 WHERE id = $2`, createdA, idB); err != nil {
		t.Fatal(err)
	}

	addrA, addrB := freeAddr(t), freeAddr(t)
	relayA := start(t, "relay run (A)", runEnv(dbA.URL, fake, "RELAY_HTTP_ADDR="+addrA), "run")
	waitDelivered(t, poolA, n+1, time.Minute)
	relayB := start(t, "relay run (B)", runEnv(dbB.URL, fake, "RELAY_HTTP_ADDR="+addrB, "RELAY_DATABASE_LABEL=shard-us"), "run")
	waitDelivered(t, poolB, n, time.Minute)
	waitFor(t, time.Minute, "the colliding row of B to fail", func() bool { return count(t, poolB, "failed_at IS NOT NULL") == 1 })

	var lastErr string
	if err := poolB.QueryRow(t.Context(), `SELECT last_error FROM outbox WHERE id = $1 AND failed_at IS NOT NULL`, idB).Scan(&lastErr); err != nil {
		t.Fatalf("row %d of B: %v", idB, err)
	}
	if !strings.Contains(lastErr, "key_collision") {
		t.Errorf("row %d of B failed with %q, want key_collision", idB, lastErr)
	}

	// Each database's rows are in Svix once, under its own apps.
	for _, db := range []struct {
		name   string
		pool   *pgxpool.Pool
		prefix string
	}{{"A", poolA, "eu-"}, {"B", poolB, "us-"}} {
		for _, r := range readRows(t, db.pool) {
			if db.name == "B" && r.ID == idB {
				if r.DeliveredAt != nil || r.SvixMsgID != nil {
					t.Errorf("B: the colliding row %d was recorded delivered as %s", r.ID, deref(r.SvixMsgID))
				}
				continue
			}
			if r.AppID != "shared" && !strings.HasPrefix(r.AppID, db.prefix) {
				t.Fatalf("%s: row %d of app %s", db.name, r.ID, r.AppID)
			}
			m, ok := fake.MessageByEventID(r.AppID, r.key())
			switch {
			case !ok:
				t.Errorf("%s: row %d (%s): svix holds no message under its key %s", db.name, r.ID, r.AppID, r.key())
			case r.SvixMsgID == nil || *r.SvixMsgID != m.ID:
				t.Errorf("%s: row %d: svix_message_id %s, svix holds %s", db.name, r.ID, deref(r.SvixMsgID), m.ID)
			case !sameData(t, m.Payload, r.Data):
				t.Errorf("%s: row %d: svix holds %s under its key, not the row's data %s", db.name, r.ID, m.Payload, r.Data)
			}
		}
	}
	if got, want := len(fake.AllMessages()), 2*n+1; got != want {
		t.Errorf("svix holds %d messages, want %d (one per row of each database but B's colliding row)", got, want)
	}

	// Metrics and logs tell the two deployments apart.
	for _, rl := range []struct {
		p     *process
		addr  string
		label string
	}{{relayA, addrA, dbA.Name}, {relayB, addrB, "shard-us"}} {
		var metrics string
		waitFor(t, 30*time.Second, rl.label+"'s delivery counter", func() bool {
			_, metrics = get(t, "http://"+rl.addr+"/metrics")
			return strings.Contains(metrics, fmt.Sprintf(`relay_deliveries_total{database=%q,event_type="render.completed",outcome="delivered"}`, rl.label))
		})
		for line := range strings.Lines(metrics) {
			if !strings.HasPrefix(line, "#") && !strings.Contains(line, fmt.Sprintf("database=%q", rl.label)) {
				t.Errorf("%s: metric without database=%q: %s", rl.p.name, rl.label, line)
				break
			}
		}
		lines := rl.p.logLines()
		if len(lines) == 0 {
			t.Errorf("%s logged nothing", rl.p.name)
		}
		for _, l := range lines {
			if l["database"] != rl.label {
				t.Errorf("%s: log line without database %q: %v", rl.p.name, rl.label, l)
				break
			}
		}
	}
	if code, _ := get(t, "http://"+addrB+"/readyz"); code != http.StatusOK {
		t.Errorf("relay B not ready after the collision: %d", code)
	}
}

// insertShardRows inserts n rows of apps prefix-0..prefix-2 into one
// database's outbox.
func insertShardRows(t *testing.T, pool *pgxpool.Pool, prefix string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := pool.Exec(ctx, `
		INSERT INTO outbox (app_id, event_type, data)
		SELECT $1 || '-' || (i % 3), 'render.completed',
		       jsonb_build_object('entity_id', $1 || '_render_' || i, 'asset_id', $1 || '_asset_' || i)
		  FROM generate_series(1, $2::int) AS i`, prefix, n); err != nil {
		t.Fatalf("insert %s rows: %v", prefix, err)
	}
}

// sameData reports whether a Svix payload's data is the row's data.
func sameData(t *testing.T, payload, data []byte) bool {
	t.Helper()
	var p struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	return canonicalJSON(t, p.Data) == canonicalJSON(t, data)
}
