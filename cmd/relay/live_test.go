package main_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/svixfake"
)

const liveSecret = "live-secret-for-tests-0123456789abcdef"

// liveToken runs `relay live-token` and returns the last line of stdout.
func liveToken(t *testing.T, app string, extra ...string) string {
	t.Helper()
	code, stdout, stderr := relay(t, relayEnv("RELAY_LIVE_SECRET="+liveSecret), append([]string{"live-token", "--app-id", app}, extra...)...)
	if code != 0 {
		t.Fatalf("live-token: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	return lines[len(lines)-1]
}

func TestLiveSettings(t *testing.T) {
	t.Parallel()
	short := "only-31-bytes-long-secret-xxxxx"
	code, stdout, stderr := relay(t, relayEnv("RELAY_LIVE_SECRET="+short), "live-token", "--app-id", "acme")
	if code != 2 || !strings.Contains(stderr, "RELAY_LIVE_SECRET") || strings.Contains(stdout+stderr, short) {
		t.Errorf("live-token with a short secret: exit %d, stderr %q; want 2 naming RELAY_LIVE_SECRET without printing it", code, stderr)
	}
	code, stdout, stderr = relay(t, relayEnv("DATABASE_URL=postgres://127.0.0.1:1/x", "SVIX_AUTH_TOKEN=x", "RELAY_LIVE_SECRET="+short), "serve")
	if code != 2 || !strings.Contains(stderr, "RELAY_LIVE_SECRET") || strings.Contains(stdout+stderr, short) {
		t.Errorf("serve with a short secret: exit %d, stderr %q; want 2 naming RELAY_LIVE_SECRET without printing it", code, stderr)
	}
	if tok := liveToken(t, "acme", "--ttl", "1m"); strings.Count(tok, ".") != 2 {
		t.Errorf("live-token printed %q, want a JWT", tok)
	}
	if code, _, _ := relay(t, relayEnv("RELAY_LIVE_SECRET="+liveSecret), "live-token", "--app-id", "app_bad"); code != 2 {
		t.Errorf("live-token with a bad app id: exit %d, want 2", code)
	}
}

// serveLive starts relay serve with the live stream on addr, with Svix
// unreachable and no relay run: the stream needs neither.
func serveLive(t *testing.T, name, dbURL, addr string, extra ...string) *process {
	t.Helper()
	env := relayEnv(append([]string{"DATABASE_URL=" + dbURL, "SVIX_AUTH_TOKEN=testsk_unused", "SVIX_SERVER_URL=http://127.0.0.1:1",
		"RELAY_SERVE_ADDR=" + addr, "RELAY_LOG_FORMAT=json", "RELAY_LIVE_SECRET=" + liveSecret,
		"RELAY_LIVE_INSECURE_COOKIE=true", "RELAY_SHUTDOWN_TIMEOUT=5s"}, extra...)...)
	p := start(t, name, env, "serve")
	waitFor(t, 30*time.Second, name+" to answer", func() bool {
		if !p.running() {
			t.Fatalf("%s exited %d", name, p.code)
		}
		code, _ := get(t, "http://"+addr+"/healthz")
		return code == http.StatusOK
	})
	return p
}

func insertLive(t *testing.T, pool *pgxpool.Pool, app, entity string) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `INSERT INTO outbox (app_id, event_type, data)
		VALUES ($1, 'render.completed', jsonb_build_object('entity_id', $2::text, 'asset_id', 'asset-' || $2::text))`, app, entity); err != nil {
		t.Fatalf("insert: %v", err)
	}
}

func TestServeLive(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	addr := freeAddr(t)
	p := serveLive(t, "relay serve", b.schema.URL, addr)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/live", nil)
	tok := liveToken(t, "acme")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v1/live: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				events <- sc.Text()
			}
		}
	}()
	insertLive(t, b.pool, "other", "x")
	insertLive(t, b.pool, "acme", "1")
	select {
	case e := <-events:
		if !strings.Contains(e, `"entity_id": "1"`) {
			t.Fatalf("first event %s, want acme's row", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s with relay run and Svix down")
	}

	// SIGTERM with a stream open: the stream ends and serve exits 0 in time.
	took := p.stop(t, 10*time.Second)
	t.Logf("relay serve exited 0 %s after SIGTERM with a live stream open", took.Round(10*time.Millisecond))
	for range events {
	}
	if strings.Contains(p.stderr.String()+p.stdout.String(), tok) || strings.Contains(p.stderr.String(), liveSecret) {
		t.Error("relay serve's output contains the live token or secret")
	}
}
