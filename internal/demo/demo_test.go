package demo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/mediaplatform/relay/internal/demo"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/testkit"
	"github.com/mediaplatform/relay/outbox"
)

func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}

// findPsql returns a psql program, or "".
func findPsql() string {
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql")
	if len(found) == 0 {
		return ""
	}
	return found[len(found)-1]
}

func shellWord(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func logger(t *testing.T) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// checkReport checks a finished run against the database: every committed
// row delivered once and verified, the rolled-back one never, the invalid
// insert refused, the simulated failures retried and deduplicated.
func checkReport(t *testing.T, pool *pgxpool.Pool, r *demo.Report, out string) {
	t.Helper()
	ctx := t.Context()

	// The receiver's endpoints were made through the endpoint API with an
	// API key per app (revoked when the demo ends), and the receiver
	// verified every delivery with the secrets the API answered.
	t.Run("endpoints created through the API", func(t *testing.T) {
		var keys int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM api_key WHERE app_id IN ('acme', 'initech') AND name = 'relay demo' AND revoked_at IS NOT NULL AND last_used_at IS NOT NULL`).Scan(&keys); err != nil {
			t.Fatal(err)
		}
		if keys < 2 {
			t.Errorf("%d used and revoked demo API keys, want one per app", keys)
		}
		if !strings.Contains(out, "/v1/webhook-endpoints (as relay serve)") {
			t.Errorf("the demo does not show the API it used:\n%s", out)
		}
	})

	t.Run("every committed event verified", func(t *testing.T) {
		if len(r.Expected) != 10 || len(r.Missing) != 0 || len(r.Mismatched) != 0 {
			t.Fatalf("expected %d, missing %v, mismatched %v", len(r.Expected), r.Missing, r.Mismatched)
		}
		var types []string
		for _, e := range r.Expected {
			rc, ok := r.Verified(e.RowID)
			if !ok {
				t.Errorf("row %d (%s) was not processed by the receiver", e.RowID, e.Type)
				continue
			}
			if !rc.Verified || rc.Err != "" || rc.Type != string(e.Type) || rc.App != e.App {
				t.Errorf("row %d: receipt %+v", e.RowID, rc)
			}
			if !strings.HasPrefix(rc.IdempotencyKey, fmt.Sprintf("ob_%d_", e.RowID)) || rc.IdempotencyKey != rc.EventID {
				t.Errorf("row %d: idempotency key %q, eventId %q", e.RowID, rc.IdempotencyKey, rc.EventID)
			}
			if rc.Approx || rc.Latency <= 0 || rc.Latency > 30*time.Second {
				t.Errorf("row %d: latency %s (approx %t)", e.RowID, rc.Latency, rc.Approx)
			}
			types = append(types, string(e.Type))
		}
		for _, typ := range outbox.EventTypes {
			if !slices.Contains(types, string(typ)) {
				t.Errorf("no %s event verified", typ)
			}
		}
		for _, rc := range r.Receipts {
			if !rc.Verified {
				t.Errorf("a delivery failed verification: %+v", rc)
			}
		}
	})

	t.Run("outbox rows delivered with the received message ids", func(t *testing.T) {
		for _, e := range r.Expected {
			rc, _ := r.Verified(e.RowID)
			var msgID string
			err := pool.QueryRow(ctx, `SELECT svix_message_id FROM outbox WHERE id = $1 AND delivered_at IS NOT NULL AND failed_at IS NULL`, e.RowID).Scan(&msgID)
			if err != nil || msgID != rc.SvixID {
				t.Errorf("row %d: svix_message_id %q (%v), receiver saw %q", e.RowID, msgID, err, rc.SvixID)
			}
		}
	})

	t.Run("rolled-back event never arrives", func(t *testing.T) {
		rb := r.RolledBack
		if rb.RowID == 0 || !rb.CommittedAt.IsZero() {
			t.Fatalf("rolled back row: %+v", rb)
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE id = $1 OR data ->> 'entity_id' = $2`, rb.RowID, rb.EntityID).Scan(&n); err != nil || n != 0 {
			t.Errorf("rolled-back row: %d rows (%v), want 0", n, err)
		}
		for _, rc := range r.Receipts {
			if rc.RowID == rb.RowID || strings.Contains(string(rc.Data), rb.EntityID) {
				t.Errorf("the rolled-back event arrived: %+v", rc)
			}
		}
	})

	t.Run("invalid insert refused", func(t *testing.T) {
		var pgErr *pgconn.PgError
		if !errors.As(r.Refused, &pgErr) || pgErr.Code != "23514" || pgErr.ConstraintName != "data_previous_state" {
			t.Fatalf("refusal %v, want SQLSTATE 23514 data_previous_state", r.Refused)
		}
		if !strings.Contains(out, pgErr.Message) {
			t.Errorf("the refusal %q is not printed", pgErr.Message)
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE data ->> 'previous_state' = 'done'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("invalid rows: %d (%v), want 0", n, err)
		}
	})

	t.Run("retry and deduplication shown", func(t *testing.T) {
		var refused, lostAck, duplicate *demo.Receipt
		for i, rc := range r.Receipts {
			switch {
			case rc.Fault == demo.FaultRefuse:
				refused = &r.Receipts[i]
			case rc.Fault == demo.FaultLoseAck:
				lostAck = &r.Receipts[i]
			case rc.Duplicate:
				duplicate = &r.Receipts[i]
			}
		}
		if refused == nil || refused.Status != http.StatusServiceUnavailable || refused.Processed {
			t.Fatalf("refused delivery: %+v", refused)
		}
		if rc, _ := r.Verified(refused.RowID); rc.Try != 2 {
			t.Errorf("row %d processed on try %d, want 2 (after the 503)", refused.RowID, rc.Try)
		}
		if lostAck == nil || duplicate == nil || duplicate.SvixID != lostAck.SvixID || duplicate.Try != 2 {
			t.Errorf("lost ack %+v, duplicate %+v", lostAck, duplicate)
		}
	})

	t.Run("data delivered exactly", func(t *testing.T) {
		for _, e := range r.Expected {
			if e.How != "plain SQL" {
				continue
			}
			rc, _ := r.Verified(e.RowID)
			if !bytes.Contains(rc.Data, []byte(`"frames":9007199254740993`)) {
				t.Errorf("big integer not delivered verbatim: %s", rc.Data)
			}
		}
	})

	t.Run("table and summary printed", func(t *testing.T) {
		for _, want := range []string{"IDEMPOTENCY KEY", "SVIX MESSAGE ID", "LATENCY", "SIGNATURE", "verified", "rolled back", "refused", "OK  10 of 10 events"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
}

func TestRun(t *testing.T) {
	t.Parallel()

	s := pgtest.NewSchema(t)
	var out testkit.LogBuffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, err := demo.Run(ctx, demo.Config{DatabaseURL: s.URL, Out: &out, Logger: logger(t)})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if r.Schema != s.Name {
		t.Errorf("schema %q, want the URL's %q", r.Schema, s.Name)
	}
	checkReport(t, s.Pool(t), r, out.String())
	t.Log("\n" + out.String())
}

// TestRunFollow runs the demo in a named schema with --follow, then a row
// committed by plain SQL, as the README's psql line does, is delivered and
// shown; a second demo on the schema is refused; a later run reuses it.
func TestRunFollow(t *testing.T) {
	t.Parallel()

	s := pgtest.NewSchema(t)
	pool := s.Pool(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	followCtx, stop := context.WithCancel(ctx)
	defer stop()
	var out testkit.LogBuffer
	type result struct {
		r   *demo.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := demo.Run(followCtx, demo.Config{DatabaseURL: pgtest.BaseURL(t), Schema: s.Name, Follow: true, Out: &out, Logger: logger(t)})
		done <- result{r, err}
	}()
	testkit.WaitFor(t, 45*time.Second, "the summary", func() bool {
		select {
		case res := <-done:
			t.Fatalf("Run returned before following: %v\n%s", res.err, out.String())
		default:
		}
		return strings.Contains(out.String(), "Following")
	})
	psqlLine := regexp.MustCompile(`(?m)^  (psql .*)$`).FindStringSubmatch(out.String())
	if want := fmt.Sprintf(`-c 'SET search_path TO %s' -c "INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'render.completed'`, s.Name); psqlLine == nil || !strings.Contains(psqlLine[1], want) {
		t.Fatalf("no psql line inserting into %s.outbox:\n%s", s.Name, out.String())
	}

	t.Run("second demo on the schema refused", func(t *testing.T) {
		_, err := demo.Run(ctx, demo.Config{DatabaseURL: pgtest.BaseURL(t), Schema: s.Name, Out: &bytes.Buffer{}})
		if err == nil || !strings.Contains(err.Error(), "another relay demo is running") {
			t.Fatalf("second demo: %v", err)
		}
	})

	// The printed psql line, run as printed when psql is at hand.
	if psql := findPsql(); psql != "" {
		cmd := exec.CommandContext(ctx, "bash", "-c", strings.Replace(psqlLine[1], "psql ", shellWord(psql)+" ", 1))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", psqlLine[1], err, b)
		}
	} else {
		t.Log("no psql: inserting the row with the pool instead")
		if _, err := pool.Exec(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'render.completed', jsonb_build_object('entity_id', 'render_42', 'asset_id', 'asset_42'))`); err != nil {
			t.Fatal(err)
		}
	}
	var id, other int64
	if err := pool.QueryRow(ctx, `SELECT id FROM outbox WHERE data ->> 'entity_id' = 'render_42'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ('nobody', 'asset.failed', jsonb_build_object('entity_id', 'a', 'asset_id', 'a')) RETURNING id`).Scan(&other); err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("%6d  render.completed", id)
	testkit.WaitFor(t, 30*time.Second, "the inserted row's delivery", func() bool {
		return strings.Contains(out.String(), line) && strings.Contains(out.String(), fmt.Sprintf("row %d (asset.failed) was accepted by Svix", other))
	})
	stop()
	res := <-done
	if res.err != nil {
		t.Fatalf("Run after Ctrl-C: %v", res.err)
	}
	var rc demo.Receipt
	for _, r := range res.r.Receipts {
		if r.RowID == id {
			rc = r
		}
	}
	if !rc.Verified || !rc.Processed || !rc.Approx || rc.Latency <= 0 {
		t.Errorf("receipt of the inserted row: %+v", rc)
	}
	checkReport(t, pool, res.r, out.String())

	t.Run("rerun on the same schema", func(t *testing.T) {
		var out testkit.LogBuffer
		r, err := demo.Run(ctx, demo.Config{DatabaseURL: pgtest.BaseURL(t), Schema: s.Name, Out: &out, Logger: logger(t)})
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, out.String())
		}
		checkReport(t, pool, r, out.String())
	})
}

func TestRunTimeout(t *testing.T) {
	t.Parallel()

	// Given no time to wait, the demo fails naming the rows it missed (the
	// lost acknowledgement's redelivery alone takes 500ms).
	s := pgtest.NewSchema(t)
	var out testkit.LogBuffer
	_, err := demo.Run(t.Context(), demo.Config{DatabaseURL: s.URL, Timeout: time.Nanosecond, Out: &out})
	if err == nil || !strings.Contains(err.Error(), "events verified within 1ns; missing: row") {
		t.Fatalf("Run with no time: %v", err)
	}
	if !strings.Contains(out.String(), "FAIL  ") {
		t.Errorf("no FAIL line:\n%s", out.String())
	}
}

func TestServeSvix(t *testing.T) {
	t.Parallel()

	var out testkit.LogBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- demo.ServeSvix(ctx, demo.ServeConfig{SvixAddr: "127.0.0.1:0", Out: &out}) }()
	testkit.WaitFor(t, 10*time.Second, "the instructions", func() bool {
		return strings.Contains(out.String(), "export SVIX_SERVER_URL=http://127.0.0.1:") && strings.Contains(out.String(), "SIGNATURE")
	})
	if !strings.Contains(out.String(), "SVIX_AUTH_TOKEN="+demo.Token) || !strings.Contains(out.String(), `psql "$DATABASE_URL" -c "INSERT INTO outbox`) {
		t.Errorf("instructions:\n%s", out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeSvix: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()

	if _, err := demo.Run(t.Context(), demo.Config{}); err == nil || !strings.Contains(err.Error(), "DatabaseURL") {
		t.Errorf("no DatabaseURL: %v", err)
	}
}

// A schema name with capitals is kept as given, not folded to lower case
// by an unquoted search_path.
func TestRunMixedCaseSchema(t *testing.T) {
	t.Parallel()
	name := "Demo_" + strings.TrimPrefix(pgtest.NewSchema(t).Name, "t_")
	admin, err := pgxpool.New(t.Context(), pgtest.BaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, _ = admin.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
		admin.Close()
	})
	var out testkit.LogBuffer
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, err := demo.Run(ctx, demo.Config{DatabaseURL: pgtest.BaseURL(t), Schema: name, Out: &out, Logger: logger(t)})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if r.Schema != name {
		t.Errorf("schema %q, want %q", r.Schema, name)
	}
	var rows int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{name, "outbox"}.Sanitize()).Scan(&rows); err != nil || rows == 0 {
		t.Errorf("outbox in %s: %d rows, %v", name, rows, err)
	}
}
