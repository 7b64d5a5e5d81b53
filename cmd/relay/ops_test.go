package main_test

// Tests of the on-call commands (status, replay, prune, svix sync,
// healthcheck) and the operations endpoints (River UI, metrics), driving the
// relay binary against a real database and the fake Svix.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/msgkey"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/internal/testkit"
)

// opsBundle is a migrated schema of a test's own, a pool on it and a fake
// Svix.
type opsBundle struct {
	schema pgtest.Schema
	pool   *pgxpool.Pool
	fake   *svixfake.Server
}

func opsSetup(t *testing.T) *opsBundle {
	t.Helper()
	s := pgtest.NewSchema(t)
	b := &opsBundle{schema: s, pool: s.Pool(t), fake: svixfake.NewStarted(t, svixfake.Config{})}
	if code, _, stderr := relay(t, relayEnv("DATABASE_URL="+s.URL), "migrate"); code != 0 {
		t.Fatalf("relay migrate: exit %d: %s", code, stderr)
	}
	return b
}

// cli runs a command that needs only the database.
func (b *opsBundle) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return relay(t, relayEnv("DATABASE_URL="+b.schema.URL), args...)
}

// row inserts a render.completed row for app and sets its state (SQL after
// SET; empty leaves it pending).
func (b *opsBundle) row(t *testing.T, app, set string) int64 {
	t.Helper()
	return testkit.InsertRow(t, b.pool, app, "render.completed", `{"entity_id":"render_1","asset_id":"asset_1"}`, set)
}

func (b *opsBundle) read(t *testing.T, id int64) outboxRow {
	t.Helper()
	for _, r := range readRows(t, b.pool) {
		if r.ID == id {
			return r
		}
	}
	t.Fatalf("no outbox row %d", id)
	return outboxRow{}
}

// messagesWithEventID are the messages Svix accepted with eventID.
func (b *opsBundle) messagesWithEventID(eventID string) []svixfake.Message {
	var out []svixfake.Message
	for _, m := range b.fake.AllMessages() {
		if m.EventID == eventID {
			out = append(out, m)
		}
	}
	return out
}

func TestOpsStatus(t *testing.T) {
	t.Parallel()
	b := opsSetup(t)
	oldest := b.row(t, "acme", "created_at = now() - interval '10 minutes', enqueued_at = now(), attempts = 2, last_error = 'svix 503: server_error'")
	b.row(t, "acme", "")
	b.row(t, "acme", "enqueued_at = now(), delivered_at = now(), svix_message_id = 'msg_1'")
	failed := b.row(t, "beta", "enqueued_at = now(), failed_at = now(), attempts = 1, last_error = 'svix 422: validation: bad'")

	code, stdout, stderr := b.cli(t, "status", "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, stderr)
	}
	var rep struct {
		Pending           int64 `json:"pending"`
		InFlight          int64 `json:"in_flight"`
		DeliveredLastHour int64 `json:"delivered_last_hour"`
		Failed            int64 `json:"failed"`
		Oldest            *struct {
			ID         int64   `json:"id"`
			AgeSeconds float64 `json:"age_seconds"`
			State      string  `json:"state"`
			LastError  string  `json:"last_error"`
		} `json:"oldest_undelivered"`
		Failures []struct {
			ID        int64  `json:"id"`
			LastError string `json:"last_error"`
		} `json:"recent_failures"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, stdout)
	}
	if rep.Pending != 1 || rep.InFlight != 1 || rep.DeliveredLastHour != 1 || rep.Failed != 1 {
		t.Errorf("counts %+v, want 1 of each", rep)
	}
	if rep.Oldest == nil || rep.Oldest.ID != oldest || rep.Oldest.State != "in_flight" || rep.Oldest.AgeSeconds < 590 ||
		!strings.Contains(rep.Oldest.LastError, "503") {
		t.Errorf("oldest undelivered %+v, want row %d, in flight, ~600 s old, with its error", rep.Oldest, oldest)
	}
	if len(rep.Failures) != 1 || rep.Failures[0].ID != failed || !strings.Contains(rep.Failures[0].LastError, "422") {
		t.Errorf("failures %+v, want row %d with its reason", rep.Failures, failed)
	}

	code, stdout, stderr = b.cli(t, "status")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"pending", "in flight", "failed", fmt.Sprintf("row %d", oldest), "svix 422: validation: bad"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, stdout)
		}
	}
	// The labels are always printed; the counts beside them must be the rows'.
	for _, want := range []string{`pending\s+1\b`, `in flight\s+1\b`, `failed\s+1\b`} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("status output does not match %s:\n%s", want, stdout)
		}
	}
}

// TestOpsReplay replays a failed row and force-resends a delivered one
// through `relay replay` while a relay runs, and checks the keys Svix sees.
func TestOpsReplay(t *testing.T) {
	t.Parallel()
	b := opsSetup(t)
	b.fake.FailApp("broken", http.StatusUnprocessableEntity, "validation", "the app is misconfigured")
	p := start(t, "relay run", runEnv(b.schema.URL, b.fake), "run")
	p.httpAddr(t)

	good := b.row(t, "acme", "")
	bad := b.row(t, "broken", "")
	waitFor(t, 30*time.Second, "one row delivered and one failed", func() bool {
		return count(t, b.pool, fmt.Sprintf("id = %d AND delivered_at IS NOT NULL", good)) == 1 &&
			count(t, b.pool, fmt.Sprintf("id = %d AND failed_at IS NOT NULL", bad)) == 1
	})
	badRow := b.read(t, bad)
	badKey := msgkey.Format(badRow.ID, badRow.CreatedAt, 0)

	t.Run("UnknownID", func(t *testing.T) {
		code, stdout, stderr := b.cli(t, "replay", "--id", "999999")
		if code != 1 || !strings.Contains(stderr, "999999") {
			t.Errorf("replay --id 999999: exit %d, stderr %q; want 1 naming the id", code, stderr)
		}
		if stdout != "" {
			t.Errorf("stdout %q, want nothing", stdout)
		}
	})

	t.Run("DeliveredNotForced", func(t *testing.T) {
		code, stdout, stderr := b.cli(t, "replay", "--id", fmt.Sprint(good))
		if code != 0 || !strings.Contains(stdout, "already delivered") {
			t.Errorf("replay of a delivered row: exit %d, %q %q; want 0 and a note that it is delivered", code, stdout, stderr)
		}
		if r := b.read(t, good); r.Resends != 0 || r.DeliveredAt == nil {
			t.Errorf("delivered row changed without --force-resend: %+v", r)
		}
	})

	t.Run("FailedDryRun", func(t *testing.T) {
		code, stdout, stderr := b.cli(t, "replay", "--failed-since", "1h", "--dry-run")
		if code != 0 || !strings.Contains(stdout, fmt.Sprintf("row %d", bad)) || !strings.Contains(stdout, badKey) ||
			!strings.Contains(stdout, "would re-queue") {
			t.Errorf("dry run: exit %d\n%s%s", code, stdout, stderr)
		}
		if r := b.read(t, bad); r.FailedAt == nil {
			t.Error("the dry run replayed the row")
		}
	})

	t.Run("FailedKeepsItsKey", func(t *testing.T) {
		b.fake.FailApp("broken", 0, "", "") // the app is fixed
		code, stdout, stderr := b.cli(t, "replay", "--failed", "--app", "broken", "--event-type", "render.completed")
		if code != 0 || !strings.Contains(stdout, "replayed 1 rows") {
			t.Fatalf("replay --failed: exit %d\n%s%s", code, stdout, stderr)
		}
		waitFor(t, 30*time.Second, "the replayed row delivered", func() bool {
			return count(t, b.pool, fmt.Sprintf("id = %d AND delivered_at IS NOT NULL", bad)) == 1
		})
		msgs := b.messagesWithEventID(badKey)
		if len(msgs) != 1 || msgs[0].IdempotencyKey != badKey {
			t.Fatalf("svix holds %d messages with eventId %s (%+v), want 1 sent under that key", len(msgs), badKey, msgs)
		}
		if r := b.read(t, bad); r.SvixMsgID == nil || *r.SvixMsgID != msgs[0].ID || r.Resends != 0 {
			t.Errorf("replayed row %+v, want delivered as %s, resends 0", r, msgs[0].ID)
		}
	})

	t.Run("ForceResendNewKey", func(t *testing.T) {
		before := b.read(t, good)
		code, stdout, stderr := b.cli(t, "replay", "--id", fmt.Sprint(good), "--force-resend")
		newKey := msgkey.Format(before.ID, before.CreatedAt, 1)
		if code != 0 || !strings.Contains(stdout, newKey) {
			t.Fatalf("replay --force-resend: exit %d, want 0 naming the new key %s\n%s%s", code, newKey, stdout, stderr)
		}
		waitFor(t, 30*time.Second, "the resent row delivered again", func() bool {
			return count(t, b.pool, fmt.Sprintf("id = %d AND resends = 1 AND delivered_at IS NOT NULL", good)) == 1
		})
		first := b.messagesWithEventID(msgkey.Format(before.ID, before.CreatedAt, 0))
		second := b.messagesWithEventID(newKey)
		if len(first) != 1 || len(second) != 1 || second[0].IdempotencyKey != newKey || first[0].ID == second[0].ID {
			t.Fatalf("svix messages: %d under the row key, %d under %s; want one each, distinct", len(first), len(second), newKey)
		}
		var replayedAt *time.Time
		if err := b.pool.QueryRow(t.Context(), "SELECT replayed_at FROM outbox WHERE id = $1", good).Scan(&replayedAt); err != nil || replayedAt == nil {
			t.Errorf("the resend is not recorded on the row (replayed_at %v, %v)", replayedAt, err)
		}
		if r := b.read(t, good); r.SvixMsgID == nil || *r.SvixMsgID != second[0].ID {
			t.Errorf("row's svix_message_id %v, want the new message %s", deref(r.SvixMsgID), second[0].ID)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		for _, args := range [][]string{
			{"replay"},
			{"replay", "--since", "1h"},
			{"replay", "--force-resend"},
			{"replay", "--id", "1", "--failed"},
			{"replay", "--failed-since", "last tuesday"},
			{"replay", "--failed", "--delivered-since", "1h"},
		} {
			if code, _, stderr := b.cli(t, args...); code != 2 || stderr == "" {
				t.Errorf("relay %s: exit %d, stderr %q; want 2 with a reason", strings.Join(args, " "), code, stderr)
			}
		}
	})
	p.stop(t, stopBound)
}

// After an outage, rows that gave up at max age were written days before
// they failed: --failed-since selects by failed_at, as the runbook's SQL
// does.
func TestOpsReplayFailedSince(t *testing.T) {
	t.Parallel()
	b := opsSetup(t)
	const gaveUp = "enqueued_at = now(), attempts = 40, last_error = 'gave up after 72h0m0s (max age 72h0m0s): svix 503'"
	recent := b.row(t, "acme", gaveUp+", created_at = now() - interval '72 hours', failed_at = now() - interval '1 hour'")
	stale := b.row(t, "acme", gaveUp+", created_at = now() - interval '5 days', failed_at = now() - interval '3 days'")

	code, stdout, stderr := b.cli(t, "replay", "--failed-since", "2h", "--dry-run")
	if code != 0 || !strings.Contains(stdout, fmt.Sprintf("row %d ", recent)) || strings.Contains(stdout, fmt.Sprintf("row %d ", stale)) {
		t.Errorf("replay --failed-since 2h --dry-run: exit %d, want row %d (written 72h ago, failed 1h ago) and not row %d\n%s%s",
			code, recent, stale, stdout, stderr)
	}
	code, stdout, stderr = b.cli(t, "replay", "--failed-since", "2h")
	if code != 0 || !strings.Contains(stdout, "replayed 1 rows") {
		t.Fatalf("replay --failed-since 2h: exit %d\n%s%s", code, stdout, stderr)
	}
	if n := count(t, b.pool, fmt.Sprintf("id = %d AND failed_at IS NULL", recent)); n != 1 {
		t.Errorf("row %d is still failed after the replay", recent)
	}
	if n := count(t, b.pool, fmt.Sprintf("id = %d AND failed_at IS NOT NULL", stale)); n != 1 {
		t.Errorf("row %d, failed 3 days ago, was replayed", stale)
	}

	// The old spelling is refused with the new one named.
	code, _, stderr = b.cli(t, "replay", "--failed", "--since", "2h")
	if code != 2 || !strings.Contains(stderr, "--failed-since") {
		t.Errorf("replay --failed --since 2h: exit %d, stderr %q; want 2 naming --failed-since", code, stderr)
	}
}

func TestOpsPrune(t *testing.T) {
	t.Parallel()
	b := opsSetup(t)
	var olds []int64
	for range 5 {
		olds = append(olds, b.row(t, "acme", "enqueued_at = now() - interval '9 days', delivered_at = now() - interval '8 days', svix_message_id = 'msg_old'"))
	}
	// Written nine days ago: their partition ended long ago.
	oldPart := testkit.MoveToPartition(t, b.pool, time.Now().Add(-9*24*time.Hour), olds...)
	recent := b.row(t, "acme", "enqueued_at = now(), delivered_at = now(), svix_message_id = 'msg_new'")
	oldFailed := b.row(t, "acme", "enqueued_at = now() - interval '9 days', failed_at = now() - interval '8 days', last_error = '422'")
	pending := b.row(t, "acme", "created_at = now() - interval '30 days'")

	type result struct {
		Partitions []struct {
			Name string `json:"name"`
		} `json:"partitions"`
		Failed  int64 `json:"failed"`
		Batches int   `json:"batches"`
	}
	dropped := func(r result) string {
		var names []string
		for _, p := range r.Partitions {
			names = append(names, p.Name)
		}
		return strings.Join(names, ",")
	}
	prune := func(args ...string) result {
		t.Helper()
		code, stdout, stderr := b.cli(t, append([]string{"prune", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("prune %v: exit %d: %s", args, code, stderr)
		}
		var r result
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("prune --json: %v: %s", err, stdout)
		}
		return r
	}
	// The new outbox's empty first partition (1970) goes too.
	want := "outbox_legacy," + oldPart
	if r := prune("--dry-run"); dropped(r) != want || r.Failed != 0 {
		t.Errorf("dry run %+v, want partitions %s counted", r, want)
	}
	if n := count(t, b.pool, "true"); n != 8 {
		t.Fatalf("the dry run deleted rows: %d left, want 8", n)
	}
	if r := prune("--batch", "2"); dropped(r) != want || r.Failed != 0 || r.Batches != 0 {
		t.Errorf("prune %+v, want partitions %s dropped, no row deleted", r, want)
	}
	if r := prune("--retention", "0", "--failed-before", "7d"); dropped(r) != "" || r.Failed != 1 || r.Batches != 1 {
		t.Errorf("prune --failed-before %+v, want the old failed row", r)
	}
	left := readRows(t, b.pool)
	if len(left) != 2 || left[0].ID != recent || left[1].ID != pending {
		t.Errorf("rows left %+v, want the recent delivered row %d and the pending row %d (old failed %d gone)", left, recent, pending, oldFailed)
	}
}

func TestOpsSvixSync(t *testing.T) {
	t.Parallel()
	b := opsSetup(t)
	env := relayEnv("DATABASE_URL="+b.schema.URL, "SVIX_AUTH_TOKEN="+svixfake.DefaultToken, "SVIX_SERVER_URL="+b.fake.URL())
	code, stdout, stderr := relay(t, env, "svix", "sync")
	if code != 0 || !strings.Contains(stdout, "8 created") {
		t.Fatalf("svix sync: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = relay(t, env, "svix", "sync")
	if code != 0 || !strings.Contains(stdout, "0 created, 8 already registered") {
		t.Errorf("second svix sync: exit %d, want 0 with every type already there\n%s%s", code, stdout, stderr)
	}
	types := b.fake.EventTypes()
	if len(types) != 8 {
		t.Fatalf("svix has %d event types, want 8", len(types))
	}
	for _, et := range types {
		if et.Description == "" || et.Schemas == nil {
			t.Errorf("%s registered without description or schema", et.Name)
		}
	}
	if code, _, stderr := relay(t, relayEnv("DATABASE_URL="+b.schema.URL), "svix", "sync"); code != 2 || !strings.Contains(stderr, "SVIX_AUTH_TOKEN") {
		t.Errorf("svix sync without a token: exit %d, stderr %q; want 2 naming SVIX_AUTH_TOKEN", code, stderr)
	}
}

// TestOpsHTTP checks River UI's basic auth, the metrics after deliveries and
// the healthcheck command against a running relay.
func TestOpsHTTP(t *testing.T) {
	t.Parallel()
	b := opsSetup(t)
	const user, password = "oncall", "correct-horse-battery"
	addr := freeAddr(t)
	p := start(t, "relay run", runEnv(b.schema.URL, b.fake, "RELAY_HTTP_ADDR="+addr,
		"RELAY_RIVERUI_USER="+user, "RELAY_RIVERUI_PASSWORD="+password, "RELAY_DATABASE_LABEL=shard-eu-1"), "run")
	p.waitReady(t)
	insertRows(t, b.pool, 5, 5)
	waitDelivered(t, b.pool, 5, 30*time.Second)

	t.Run("RiverUI", func(t *testing.T) {
		for _, path := range []string{"/riverui/", "/riverui/api/jobs?state=completed"} {
			if code, _ := get(t, "http://"+addr+path); code != http.StatusUnauthorized {
				t.Errorf("GET %s without credentials: %d, want 401", path, code)
			}
			code, body := getAuth(t, "http://"+addr+path, user, password)
			if code != http.StatusOK {
				t.Errorf("GET %s with credentials: %d, want 200\n%.300s", path, code, body)
			}
		}
		if code, _ := getAuth(t, "http://"+addr+"/riverui/", user, "wrong-password"); code != http.StatusUnauthorized {
			t.Errorf("GET /riverui/ with a wrong password: %d, want 401", code)
		}
		if strings.Contains(p.stdout.String()+p.stderr.String(), password) {
			t.Error("the relay printed the River UI password")
		}
	})

	t.Run("Metrics", func(t *testing.T) {
		code, body := get(t, "http://"+addr+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("GET /metrics: %d", code)
		}
		for _, want := range []string{
			`relay_deliveries_total{database="shard-eu-1",event_type="render.completed",outcome="delivered"} 5`,
			`relay_svix_request_duration_seconds_count{database="shard-eu-1",outcome="ok"} 5`,
			`relay_delivery_lag_seconds_count{database="shard-eu-1"} 5`,
			`relay_rows_pending{database="shard-eu-1"} `,
			`relay_rows_in_flight{database="shard-eu-1"} `,
			`relay_rows_failed{database="shard-eu-1"} `,
			`relay_oldest_undelivered_age_seconds{database="shard-eu-1"} `,
			`relay_rate_limit_waits_total{database="shard-eu-1"} `,
			`relay_ready{database="shard-eu-1"} 1`,
			`go_goroutines{database="shard-eu-1"} `,
			`process_resident_memory_bytes{database="shard-eu-1"} `,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		// Every sample carries the label (RELAY_DATABASE_LABEL).
		for line := range strings.Lines(body) {
			if !strings.HasPrefix(line, "#") && !strings.Contains(line, `database="shard-eu-1"`) {
				t.Errorf("/metrics sample without the database label: %s", line)
			}
		}
	})

	// zap JSON lines, River's own logs bridged into them, fixed field names.
	t.Run("Logs", func(t *testing.T) {
		river, delivered := 0, 0
		for _, l := range p.logLines() {
			if l["database"] != "shard-eu-1" {
				t.Errorf("log line without database \"shard-eu-1\": %v", l)
			}
			if l["logger"] == "river" {
				river++
			}
			if l["msg"] == "delivered" {
				delivered++
				for _, k := range []string{"outbox_id", "app_id", "event_type", "attempt", "svix_msg_id", "ts", "level"} {
					if _, ok := l[k]; !ok {
						t.Errorf("delivered log line lacks %q: %v", k, l)
					}
				}
			}
		}
		if river == 0 || delivered != 5 {
			t.Errorf("%d River log lines, %d delivered lines; want River's logs in the relay's and 5 deliveries\n%s", river, delivered, p.stderr.String())
		}
	})

	t.Run("Healthcheck", func(t *testing.T) {
		code, stdout, stderr := relay(t, relayEnv("RELAY_HTTP_ADDR="+addr), "healthcheck")
		if code != 0 || !strings.Contains(stdout, "ready") {
			t.Errorf("healthcheck of a ready relay: exit %d %q %q, want 0", code, stdout, stderr)
		}
		if code, _, _ := relay(t, relayEnv("RELAY_HTTP_ADDR="+freeAddr(t)), "healthcheck"); code != 1 {
			t.Errorf("healthcheck of nothing: exit %d, want 1", code)
		}
	})
	p.stop(t, stopBound)

	t.Run("Refused", func(t *testing.T) {
		base := []string{"DATABASE_URL=" + b.schema.URL, "SVIX_AUTH_TOKEN=" + svixfake.DefaultToken}
		for _, tc := range []struct{ env, want string }{
			{"RELAY_RIVERUI_USER=oncall", "RELAY_RIVERUI_PASSWORD"},
			{"RELAY_RIVERUI_PASSWORD=" + password, "RELAY_RIVERUI_USER"},
			{"RELAY_RETENTION=30s", "RELAY_RETENTION"},
			{"RELAY_RETENTION=soon", "RELAY_RETENTION"},
			{"RELAY_PRUNE_BATCH=0", "RELAY_PRUNE_BATCH"},
		} {
			code, stdout, stderr := relay(t, relayEnv(append(base, tc.env)...), "run")
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("run with %s: exit %d, stderr %q; want 2 naming %s", tc.env, code, stderr, tc.want)
			}
			if strings.Contains(stdout+stderr, password) {
				t.Errorf("run with %s printed the password", tc.env)
			}
		}
	})
}

// TestOpsHelp checks that help shows secrets only as set or unset, and every
// on-call command's settings with their environment variables.
func TestOpsHelp(t *testing.T) {
	t.Parallel()
	const dbSecret = "hunter2-db-password"
	env := relayEnv("DATABASE_URL=postgres://u:"+dbSecret+"@127.0.0.1/db", "SVIX_AUTH_TOKEN="+secretToken)
	for _, args := range [][]string{{"--help"}, {"run", "--help"}} {
		code, stdout, stderr := relay(t, env, args...)
		out := stdout + stderr
		if code != 0 {
			t.Fatalf("relay %s: exit %d", strings.Join(args, " "), code)
		}
		for _, want := range []string{"DATABASE_URL set", "SVIX_AUTH_TOKEN set", "RELAY_RIVERUI_PASSWORD unset"} {
			if !strings.Contains(strings.Join(strings.Fields(out), " "), want) {
				t.Errorf("relay %s does not say %q:\n%s", strings.Join(args, " "), want, out)
			}
		}
		for _, secret := range []string{secretToken, dbSecret} {
			if strings.Contains(out, secret) {
				t.Errorf("relay %s prints a secret", strings.Join(args, " "))
			}
		}
	}
	if code, stdout, _ := relay(t, relayEnv(), "version"); code != 0 || !strings.HasPrefix(stdout, "relay ") {
		t.Errorf("relay version: exit %d, %q", code, stdout)
	}
	for cmd, wants := range map[string][]string{
		"run":         {"$RELAY_RETENTION", "$RELAY_JOB_RETENTION", "$RELAY_PRUNE_INTERVAL", "$RELAY_PRUNE_BATCH", "$RELAY_RIVERUI_USER", "$RELAY_RIVERUI_PASSWORD", "retention=7d"},
		"prune":       {"$RELAY_RETENTION", "$RELAY_PRUNE_BATCH", "--failed-before", "--delivered-before", "--dry-run"},
		"replay":      {"--id", "--failed", "--failed-since", "--delivered-since", "--event-type", "--app", "--force-resend", "--dry-run"},
		"status":      {"--json", "--failures=10"},
		"svix sync":   {"$SVIX_AUTH_TOKEN", "$SVIX_SERVER_URL", "--dry-run"},
		"healthcheck": {"$RELAY_HTTP_ADDR"},
	} {
		code, stdout, _ := relay(t, relayEnv(), append(strings.Fields(cmd), "--help")...)
		if code != 0 {
			t.Errorf("relay %s --help: exit %d", cmd, code)
		}
		for _, want := range wants {
			if !strings.Contains(stdout, want) {
				t.Errorf("relay %s --help lacks %q", cmd, want)
			}
		}
	}
}

// getAuth fetches url with basic auth.
func getAuth(t *testing.T, url, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
