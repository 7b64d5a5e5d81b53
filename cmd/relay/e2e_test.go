package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// recoveryBound is how soon every pending row must be delivered after a
// relay crash, a PostgreSQL restart or the end of a Svix outage
// (decisions.md, 7).
const recoveryBound = 2 * time.Minute

// stopBound is how soon `relay run` must exit 0 after SIGTERM: its
// RELAY_SHUTDOWN_TIMEOUT (3s in runEnv) plus a margin for process exit on
// a loaded machine.
const stopBound = 3*time.Second + 2*time.Second

// bulk are the settings of the tests that drain 1,000 rows: fewer sends in
// flight than the default 100, so that the fake, which runs in the
// race-instrumented test process beside the other tests, is not the
// bottleneck, and a Svix timeout with room for a loaded machine (a timeout
// is retried under the same key, so it would only slow the drain).
var bulk = []string{"RELAY_CONCURRENCY=20", "RELAY_SVIX_TIMEOUT=3s", "RELAY_JOB_TIMEOUT=5s", "RELAY_RESCUE_AFTER=6s"}

// e2e is what a test of `relay run` works with: a migrated schema of its
// own, a pool on it and a fake Svix.
type e2e struct {
	schema pgtest.Schema
	pool   *pgxpool.Pool
	fake   *svixfake.Server
}

func setup(t *testing.T, cfg svixfake.Config) *e2e {
	t.Helper()
	s := pgtest.NewSchema(t)
	b := &e2e{schema: s, pool: s.Pool(t), fake: svixfake.NewStarted(t, cfg)}
	if code, _, stderr := relay(t, relayEnv("DATABASE_URL="+s.URL), "migrate"); code != 0 {
		t.Fatalf("relay migrate: exit %d: %s", code, stderr)
	}
	return b
}

// run starts `relay run` on the bundle; extra overrides runEnv's settings.
func (b *e2e) run(t *testing.T, name string, extra ...string) *process {
	t.Helper()
	return start(t, name, runEnv(b.schema.URL, b.fake, extra...), "run")
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	addr := freeAddr(t)
	p := b.run(t, "relay run", "RELAY_HTTP_ADDR="+addr)
	p.waitReady(t)

	if code, body := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz: %d %s", code, body)
	}
	if code, body := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz: %d %s", code, body)
	}

	// One row of each event type, by plain SQL, as a producer in any
	// language would write them. The first carries an integer beyond
	// float64 and non-ASCII text, which must arrive exactly.
	events := []struct{ app, typ, data string }{
		{"acme", "cut.completed", `{"entity_id": "cut_1", "asset_id": "asset_1", "big": 9007199254740993, "title": "Café – 日本 🎬"}`},
		{"acme", "cut.failed", `{"entity_id": "cut_2", "asset_id": "asset_1", "reason": "codec"}`},
		{"globex", "render.completed", `{"entity_id": "render_1", "asset_id": "asset_9"}`},
		{"globex", "render.failed", `{"entity_id": "render_2", "asset_id": "asset_9"}`},
		{"globex", "render.cancelled", `{"entity_id": "render_3", "asset_id": "asset_9"}`},
		{"initech", "asset.ready", `{"entity_id": "asset_7", "asset_id": "asset_7", "previous_state": "pending_payment"}`},
		{"initech", "asset.pending_payment", `{"entity_id": "asset_8", "asset_id": "asset_8"}`},
		{"initech", "asset.failed", `{"entity_id": "asset_6", "asset_id": "asset_6", "nested": {"a": [1, 2.5, null, true]}}`},
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, ev := range events {
		if _, err := b.pool.Exec(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ($1, $2, $3::jsonb)`,
			ev.app, ev.typ, ev.data); err != nil {
			t.Fatalf("insert %s: %v", ev.typ, err)
		}
	}
	waitDelivered(t, b.pool, len(events), 30*time.Second)

	rows := assertExactlyOnce(t, b.pool, b.fake, len(events))
	for i, r := range rows {
		m, ok := b.fake.MessageByEventID(r.AppID, r.key())
		if !ok {
			continue // reported by assertExactlyOnce
		}
		if r.EventType != events[i].typ {
			t.Errorf("row %d: type %s, want %s", r.ID, r.EventType, events[i].typ)
		}
		var payload map[string]json.RawMessage
		if err := json.Unmarshal(m.Payload, &payload); err != nil {
			t.Fatalf("row %d: payload %s: %v", r.ID, m.Payload, err)
		}
		if len(payload) != 2 || payload["type"] == nil || payload["data"] == nil {
			t.Errorf("row %d: payload %s, want exactly {\"type\",\"data\"}", r.ID, m.Payload)
			continue
		}
		var typ string
		if err := json.Unmarshal(payload["type"], &typ); err != nil || typ != r.EventType {
			t.Errorf("row %d: payload type %s, want %q", r.ID, payload["type"], r.EventType)
		}
		if got, want := canonicalJSON(t, payload["data"]), canonicalJSON(t, []byte(events[i].data)); got != want {
			t.Errorf("row %d: payload data\n%s\nwant what was inserted\n%s", r.ID, got, want)
		}
	}
	if m, ok := b.fake.MessageByEventID("acme", rows[0].key()); ok && !bytes.Contains(m.Payload, []byte("9007199254740993")) {
		t.Errorf("the big integer did not arrive digit for digit: %s", m.Payload)
	}

	// The counter is bumped after the row is written: poll. Every metric
	// carries the database label (the database name by default).
	var metrics string
	waitFor(t, 10*time.Second, "relay_deliveries_total for every event type", func() bool {
		var code int
		code, metrics = get(t, "http://"+addr+"/metrics")
		if code != http.StatusOK {
			return false
		}
		for _, ev := range events {
			if !strings.Contains(metrics, fmt.Sprintf(`relay_deliveries_total{database=%q,event_type=%q,outcome="delivered"} 1`, dbName(t, b.schema.URL), ev.typ)) {
				return false
			}
		}
		return true
	})
}

// dbName is the name of the database url connects to: the relay's
// database label when RELAY_DATABASE_LABEL is unset.
func dbName(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

// canonicalJSON re-encodes a JSON value with sorted keys and numbers kept
// digit for digit.
func canonicalJSON(t *testing.T, raw []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// A relay killed mid-drain loses nothing and duplicates nothing: its
// successor delivers every row, and a row the dead relay had sent but not
// yet recorded reaches Svix again only under the same key.
func TestKillMidDrain(t *testing.T) {
	t.Parallel()
	const n = 1000
	b := setup(t, svixfake.Config{})
	b.fake.SetLatency(20*time.Millisecond, 0)
	insertRows(t, b.pool, n, 250)

	first := b.run(t, "relay run (killed)", bulk...)
	waitFor(t, time.Minute, "a first delivered rows", func() bool {
		if !first.running() {
			t.Fatalf("relay exited %d before the kill", first.code)
		}
		return count(t, b.pool, deliveredSQL) >= 50
	})
	first.signal(t, syscall.SIGKILL)
	killed := time.Now()
	first.wait(t, 10*time.Second)
	deliveredAtKill := count(t, b.pool, deliveredSQL)
	acceptedAtKill := b.fake.MessageCount()
	if deliveredAtKill >= n {
		t.Fatalf("all %d rows were delivered before the kill: the test proves nothing", n)
	}

	second := b.run(t, "relay run (successor)", bulk...)
	done := waitDelivered(t, b.pool, n, recoveryBound)
	t.Logf("killed with %d of %d rows delivered (%d accepted by svix); the successor delivered every row %s after the kill",
		deliveredAtKill, n, acceptedAtKill, done.Sub(killed).Round(100*time.Millisecond))

	assertExactlyOnce(t, b.pool, b.fake, n)
	replayed, conflicts := replays(b.fake)
	t.Logf("repeated sends answered by svix's idempotency store: %d, with 409: %d", replayed, conflicts)
	if !second.running() {
		t.Errorf("the successor exited %d", second.code)
	}
}

// Two relays on one database share the rows without sending any twice.
func TestTwoRelays(t *testing.T) {
	t.Parallel()
	const n = 1000
	b := setup(t, svixfake.Config{})
	b.fake.SetLatency(20*time.Millisecond, 0)
	r1 := b.run(t, "relay run (1)", append(bulk, "RELAY_CLAIM_BATCH=100")...)
	r2 := b.run(t, "relay run (2)", append(bulk, "RELAY_CLAIM_BATCH=100")...)
	r1.waitReady(t)
	r2.waitReady(t)

	insertRows(t, b.pool, n, 50)
	waitDelivered(t, b.pool, n, recoveryBound)
	assertExactlyOnce(t, b.pool, b.fake, n)
	t.Logf("deliveries logged: relay 1 %d, relay 2 %d", r1.countLogs("delivered"), r2.countLogs("delivered"))
}

func TestSigterm(t *testing.T) {
	t.Parallel()

	// Settings for sends slower than the default 1s Svix timeout.
	slow := []string{"RELAY_SVIX_TIMEOUT=15s", "RELAY_JOB_TIMEOUT=20s", "RELAY_RESCUE_AFTER=25s", "RELAY_CONCURRENCY=10"}

	// Sends that finish within the shutdown timeout are recorded: every
	// message Svix accepted is a delivered row when the relay has exited.
	t.Run("InFlightFinish", func(t *testing.T) {
		t.Parallel()
		const n = 30
		b := setup(t, svixfake.Config{})
		b.fake.SetLatency(time.Second, 0) // well within the 2.4 s the shutdown leaves sends
		p := b.run(t, "relay run", slow...)
		p.waitReady(t)
		insertRows(t, b.pool, n, n)
		waitFake(t, b.fake, 30*time.Second, "sends in flight", func(s *svixfake.Server) bool { return s.MessageCount() >= 10 })
		took := p.stop(t, stopBound)
		t.Logf("exited %s after SIGTERM", took.Round(10*time.Millisecond))

		accepted := b.fake.MessageCount()
		if got := count(t, b.pool, deliveredSQL); got != accepted {
			t.Errorf("%d rows delivered after a graceful stop, svix accepted %d: the rest were sent and not recorded", got, accepted)
		}
		if got := count(t, b.pool, "attempts <> 0 OR last_error IS NOT NULL OR failed_at IS NOT NULL"); got != 0 {
			t.Errorf("%d rows carry a failed attempt after a graceful stop, want 0", got)
		}

		b.fake.SetLatency(0, 0)
		b.run(t, "relay run (next)")
		waitDelivered(t, b.pool, n, time.Minute)
		assertExactlyOnce(t, b.pool, b.fake, n)
	})

	// Sends still in flight at the shutdown timeout are cut off, not
	// counted as attempts, and left for the next relay, which sends them
	// again under the same key.
	t.Run("InFlightCutOff", func(t *testing.T) {
		t.Parallel()
		const n = 30
		b := setup(t, svixfake.Config{})
		b.fake.SetLatency(time.Minute, 0) // longer than the test: cut short by the client going away
		p := b.run(t, "relay run", slow...)
		p.waitReady(t)
		insertRows(t, b.pool, n, n)
		waitFake(t, b.fake, 30*time.Second, "sends in flight", func(s *svixfake.Server) bool { return s.MessageCount() >= 10 })
		took := p.stop(t, stopBound)
		t.Logf("exited %s after SIGTERM with %d sends in flight", took.Round(10*time.Millisecond), b.fake.MessageCount())

		if got := count(t, b.pool, "delivered_at IS NOT NULL"); got != 0 {
			t.Errorf("%d rows delivered, want 0 (every send was cut off)", got)
		}
		if got := count(t, b.pool, "attempts <> 0 OR last_error IS NOT NULL OR failed_at IS NOT NULL"); got != 0 {
			t.Errorf("%d rows count a cut-off send as a failed attempt, want 0", got)
		}

		b.fake.SetLatency(0, 0)
		began := time.Now()
		b.run(t, "relay run (next)")
		waitDelivered(t, b.pool, n, recoveryBound)
		t.Logf("the next relay delivered the cut-off rows in %s", time.Since(began).Round(100*time.Millisecond))
		assertExactlyOnce(t, b.pool, b.fake, n)
		if got := count(t, b.pool, "attempts <> 0"); got != 0 {
			t.Errorf("%d rows count attempts, want 0", got)
		}
	})

	// A relay retrying through a Svix outage stops as promptly.
	t.Run("DuringOutage", func(t *testing.T) {
		t.Parallel()
		const n = 10
		b := setup(t, svixfake.Config{})
		p := b.run(t, "relay run")
		p.waitReady(t)
		b.fake.Outage(time.Now().Add(time.Hour), false)
		insertRows(t, b.pool, n, n)
		waitFor(t, 30*time.Second, "every row to have failed attempts", func() bool {
			return count(t, b.pool, "attempts > 0") == n
		})
		took := p.stop(t, stopBound)
		t.Logf("exited %s after SIGTERM mid-outage", took.Round(10*time.Millisecond))
		if got := count(t, b.pool, "delivered_at IS NULL AND failed_at IS NULL"); got != n {
			t.Errorf("%d rows pending after the stop, want %d", got, n)
		}

		b.fake.Outage(time.Time{}, false)
		b.run(t, "relay run (next)")
		waitDelivered(t, b.pool, n, recoveryBound)
		assertExactlyOnce(t, b.pool, b.fake, n)
	})
}

// The relay rides out a PostgreSQL restart, including one in the middle
// of a drain, without being restarted itself.
func TestPostgresRestart(t *testing.T) {
	t.Parallel()
	cluster := pgtest.StartCluster(t)
	fake := svixfake.NewStarted(t, svixfake.Config{})
	fake.SetLatency(20*time.Millisecond, 0)
	if code, _, stderr := relay(t, relayEnv("DATABASE_URL="+cluster.URL), "migrate"); code != 0 {
		t.Fatalf("relay migrate: exit %d: %s", code, stderr)
	}
	pool := clusterPool(t, cluster.URL)
	p := start(t, "relay run", runEnv(cluster.URL, fake, bulk...), "run")
	addr := p.waitReady(t)

	// Before: a few rows delivered normally.
	insertRows(t, pool, 20, 20)
	waitDelivered(t, pool, 20, 30*time.Second)

	// During: a backlog being drained when PostgreSQL goes down.
	insertRows(t, pool, 300, 100)
	waitFor(t, 30*time.Second, "the drain to be under way", func() bool { return count(t, pool, deliveredSQL) >= 50 })
	cluster.Restart(t)
	restarted := time.Now()
	t.Logf("restarted PostgreSQL with %d of 320 rows delivered", count(t, pool, deliveredSQL))

	// After: new rows, written once the database is back.
	waitFor(t, 30*time.Second, "the database to take rows again", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := pool.Exec(ctx, `
			INSERT INTO outbox (app_id, event_type, data)
			SELECT 'after', 'asset.failed', jsonb_build_object('entity_id', 'a' || i, 'asset_id', 'a' || i)
			  FROM generate_series(1, 20) AS i`)
		return err == nil
	})

	done := waitDelivered(t, pool, 340, recoveryBound)
	t.Logf("every row delivered %s after the restart", done.Sub(restarted).Round(100*time.Millisecond))
	assertExactlyOnce(t, pool, fake, 340)
	if !p.running() {
		t.Fatalf("the relay exited %d", p.code)
	}
	waitFor(t, 30*time.Second, "/readyz 200", func() bool {
		code, _ := get(t, "http://"+addr+"/readyz")
		return code == http.StatusOK
	})
}

func clusterPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// After a Svix outage every row is delivered promptly, and during it the
// relay backs off instead of hammering Svix.
func TestSvixOutage(t *testing.T) {
	t.Parallel()
	const (
		n = 50
		// The outage lasts this long once every row has met it. A row's
		// retry is a River job scheduled after its backoff (at most 1 s
		// here), made available by River's scheduler, which runs every 5 s:
		// 8 s holds a retry of every row whatever the scheduler's phase (at
		// 5 s, a loaded machine saw only 10 of the 50 retried in it).
		after = 8 * time.Second
	)
	b := setup(t, svixfake.Config{})
	p := b.run(t, "relay run")
	addr := p.waitReady(t)

	began := time.Now()
	b.fake.Outage(began.Add(time.Hour), false)
	insertRows(t, b.pool, n, n)
	// Every row meets the outage, however slow a loaded machine makes the
	// first sends; then the outage goes on for a fixed time.
	waitFor(t, time.Minute, "every row to meet the outage", func() bool { return count(t, b.pool, "attempts > 0") == n })
	end := time.Now().Add(after)
	b.fake.Outage(end, false)

	// Readiness does not depend on Svix answering (decisions.md, 6).
	if code, body := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Errorf("GET /readyz during a svix outage: %d %s, want 200", code, body)
	}
	if got := count(t, b.pool, "failed_at IS NOT NULL OR delivered_at IS NOT NULL"); got != 0 {
		t.Errorf("%d rows ended during the outage, want 0", got)
	}

	done := waitDelivered(t, b.pool, n, time.Until(end)+recoveryBound)
	if done.Before(end) {
		t.Fatalf("rows delivered before the outage ended")
	}
	t.Logf("every row delivered %s after the outage ended", done.Sub(end).Round(10*time.Millisecond))

	// Each row is sent once, then retried no sooner than its backoff: with
	// RELAY_BACKOFF_MIN=100ms, RELAY_BACKOFF_MAX=1s and equal jitter, retry
	// k waits at least half of min(100ms·2^(k-1), 1s), so the first four
	// retries take at least 50+100+200+400 = 750ms and each later one at
	// least 500ms. In an outage of W seconds a row is sent at most
	// 1 + 4 + (W - 0.75)/0.5 times, less than 5 + 2W: 21 a row for 8 s. A
	// relay without backoff would send thousands; one that ignored the
	// backoff's floor would pass this bound only by luck.
	var during, outageAnswers int
	for _, r := range b.fake.Requests() {
		if r.Received.Before(began) || !r.Received.Before(end) {
			continue
		}
		during++
		if r.Fault == svixfake.FaultOutage {
			outageAnswers++
		}
	}
	window := end.Sub(began)
	bound := n*(5+int(2*window.Seconds())) + 5 // + a few token checks
	t.Logf("%d requests during the %s outage for %d rows (%.1f per row; bound %d)",
		during, window.Round(10*time.Millisecond), n, float64(during)/n, bound)
	if during > bound {
		t.Errorf("%d requests during the outage, want at most %d", during, bound)
	}
	if outageAnswers < 2*n {
		t.Errorf("only %d requests met the outage, want the %d rows each retried in it", outageAnswers, n)
	}

	rows := assertExactlyOnce(t, b.pool, b.fake, n)
	for _, r := range rows {
		// A delivered row keeps its last transient error (decisions.md, 4).
		if r.Attempts == 0 || r.LastError == nil || !strings.Contains(*r.LastError, "503") {
			t.Errorf("row %d: attempts %d last_error %s, want the outage's failed attempts on record", r.ID, r.Attempts, deref(r.LastError))
		}
	}
}
