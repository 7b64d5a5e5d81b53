package main_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestDemo runs `relay demo` as `make demo` does: non-interactive, exit 0
// with every event verified and the table on stdout.
func TestDemo(t *testing.T) {
	t.Parallel()

	t.Run("runs and verifies every event", func(t *testing.T) {
		t.Parallel()
		s := pgtest.NewSchema(t) // the demo is told to use it: created if absent, dropped by the test
		began := time.Now()
		code, stdout, stderr := relay(t, relayEnv("DATABASE_URL="+pgtest.BaseURL(t)), "demo", "--schema", s.Name)
		if code != 0 {
			t.Fatalf("relay demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		if took := time.Since(began); took > time.Minute {
			t.Errorf("relay demo took %s, want under a minute", took)
		}
		for _, want := range []string{
			"schema " + s.Name, "ROW  EVENT TYPE", "IDEMPOTENCY KEY", "SVIX MESSAGE ID", "LATENCY", "SIGNATURE",
			"rolled back", "refused      ERROR: outbox.data.previous_state", "(simulated outage)", "duplicate svix-id",
			"OK  10 of 10 events delivered once, signed and verified",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		}
		if strings.Contains(stderr, `"level":"info"`) || strings.Contains(stderr, "\tINFO\t") {
			t.Errorf("info logs on stderr by default:\n%s", stderr)
		}
	})

	t.Run("needs DATABASE_URL", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := relay(t, relayEnv(), "demo")
		if code != 2 || !strings.Contains(stderr, "DATABASE_URL") {
			t.Errorf("exit %d, stderr %q; want 2 naming DATABASE_URL", code, stderr)
		}
	})

	t.Run("run help points at the dev server", func(t *testing.T) {
		t.Parallel()
		code, stdout, _ := relay(t, relayEnv(), "run", "--help")
		if code != 0 || !strings.Contains(strings.Join(strings.Fields(stdout), " "), "'relay demo --svix-only' runs a Svix-compatible dev server") {
			t.Errorf("relay run --help: exit %d, does not mention relay demo --svix-only:\n%s", code, stdout)
		}
	})
}

// TestDemoSvixOnly follows the README: `relay demo --svix-only` in one
// terminal, `relay run` with the SVIX_SERVER_URL and SVIX_AUTH_TOKEN it
// printed in another, a row committed with SQL, its verified delivery shown.
func TestDemoSvixOnly(t *testing.T) {
	t.Parallel()

	dev := start(t, "relay demo --svix-only", relayEnv(), "demo", "--svix-only", "--svix-addr", "127.0.0.1:0")
	exportLine := regexp.MustCompile(`export SVIX_SERVER_URL=(\S+) SVIX_AUTH_TOKEN=(\S+)`)
	var m []string
	waitFor(t, 30*time.Second, "the dev server's settings", func() bool {
		if !dev.running() {
			t.Fatalf("relay demo --svix-only exited %d", dev.code)
		}
		m = exportLine.FindStringSubmatch(dev.stdout.String())
		return m != nil
	})

	s, pool := pgtest.Migrated(t)
	run := start(t, "relay run", relayEnv(
		"DATABASE_URL="+s.URL, "SVIX_SERVER_URL="+m[1], "SVIX_AUTH_TOKEN="+m[2],
		"RELAY_HTTP_ADDR=127.0.0.1:0", "RELAY_POLL_INTERVAL=200ms", "RELAY_SHUTDOWN_TIMEOUT=3s",
	), "run")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'render.completed', jsonb_build_object('entity_id', 'render_42', 'asset_id', 'asset_42')) RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(fmt.Sprintf(`(?m)^ +%d  render\.completed +acme +ob_%d_\d+ +msg_\S+ +~\d+ms +1  verified$`, id, id))
	waitFor(t, 30*time.Second, "the row's verified delivery", func() bool {
		return row.MatchString(dev.stdout.String())
	})
	run.stop(t, 10*time.Second)
	dev.stop(t, 10*time.Second)
}
