package main_test

import (
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// apiKey runs `relay api-key create` and returns the key, the last line
// of its stdout.
func apiKey(t *testing.T, dbURL, app string) string {
	t.Helper()
	code, stdout, stderr := relay(t, relayEnv("DATABASE_URL="+dbURL), "api-key", "create", "--app-id", app, "--name", "test key")
	if code != 0 {
		t.Fatalf("api-key create: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	return lines[len(lines)-1]
}

func TestAPIKeyCommands(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	env := relayEnv("DATABASE_URL=" + b.schema.URL)

	key := apiKey(t, b.schema.URL, "acme")
	if !strings.HasPrefix(key, "rk_live_") || len(key) < 40 {
		t.Fatalf("key %q: want rk_live_ and a long random part", key[:min(len(key), 12)])
	}
	second := apiKey(t, b.schema.URL, "initech")
	if second == key {
		t.Fatal("two keys are equal")
	}

	// Stored as a hash only: no column holds the key's text.
	sum := sha256.Sum256([]byte(key))
	var byHash, byText int
	if err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM api_key WHERE key_hash = $1`, sum[:]).Scan(&byHash); err != nil {
		t.Fatal(err)
	}
	if err := b.pool.QueryRow(t.Context(), `SELECT count(*) FROM api_key k WHERE position($1 IN k::text) > 0`, key).Scan(&byText); err != nil {
		t.Fatal(err)
	}
	if byHash != 1 || byText != 0 {
		t.Errorf("rows by hash %d, rows holding the key's text %d; want 1 and 0", byHash, byText)
	}

	code, stdout, stderr := relay(t, env, "api-key", "list", "--json")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	if strings.Contains(stdout, key) || strings.Contains(stderr, key) {
		t.Error("list shows a key")
	}
	var keys []map[string]any
	if err := json.Unmarshal([]byte(stdout), &keys); err != nil {
		t.Fatalf("list --json: %v: %s", err, stdout)
	}
	if len(keys) != 2 {
		t.Fatalf("list: %d keys, want 2", len(keys))
	}
	for _, f := range []string{"id", "app_id", "name", "created_at", "last_used_at"} {
		if _, ok := keys[0][f]; !ok {
			t.Errorf("list --json has no %s: %v", f, keys[0])
		}
	}
	code, stdout, _ = relay(t, env, "api-key", "list", "--app-id", "initech", "--json")
	if err := json.Unmarshal([]byte(stdout), &keys); code != 0 || err != nil || len(keys) != 1 || keys[0]["app_id"] != "initech" {
		t.Errorf("list --app-id initech: exit %d, %v", code, keys)
	}
	id := strconv.FormatFloat(keys[0]["id"].(float64), 'f', 0, 64)
	if code, _, stderr := relay(t, env, "api-key", "revoke", id); code != 0 {
		t.Errorf("revoke %s: exit %d: %s", id, code, stderr)
	}
	var revoked bool
	if err := b.pool.QueryRow(t.Context(), `SELECT revoked_at IS NOT NULL FROM api_key WHERE id = $1::bigint`, id).Scan(&revoked); err != nil || !revoked {
		t.Errorf("key %s revoked_at set: %v (%v)", id, revoked, err)
	}
	if code, _, stderr := relay(t, env, "api-key", "revoke", "424242"); code == 0 || !strings.Contains(stderr, "424242") {
		t.Errorf("revoke of an unknown id: exit %d: %s", code, stderr)
	}
	if code, _, stderr := relay(t, env, "api-key", "create", "--app-id", "app_bad"); code != 2 || !strings.Contains(stderr, "app-id") {
		t.Errorf("create with a bad app id: exit %d: %s", code, stderr)
	}
}

// TestServe drives `relay serve`: the API answers on RELAY_SERVE_ADDR,
// logs one line per request without keys or secrets, and exits 0 within
// 10 s of SIGTERM, also with a request in flight.
func TestServe(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	key := apiKey(t, b.schema.URL, "acme")
	addr := freeAddr(t)
	env := relayEnv("DATABASE_URL="+b.schema.URL, "SVIX_AUTH_TOKEN="+svixfake.DefaultToken, "SVIX_SERVER_URL="+b.fake.URL(),
		"RELAY_SERVE_ADDR="+addr, "RELAY_LOG_FORMAT=json", "RELAY_SHUTDOWN_TIMEOUT=5s")
	p := start(t, "relay serve", env, "serve")
	base := "http://" + addr

	call := func(method, path, body string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := httpClient.Do(req)
		if err != nil {
			return 0, nil, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	waitFor(t, 30*time.Second, "relay serve to answer", func() bool {
		if !p.running() {
			t.Fatalf("relay serve exited %d", p.code)
		}
		code, _, _ := call(http.MethodGet, "/v1/webhook-endpoints", "")
		return code == http.StatusOK
	})

	code, hdr, body := call(http.MethodPost, "/v1/webhook-endpoints", `{"url": "https://example.com/hooks", "event_types": ["cut.completed", "render.completed"]}`)
	var ep struct{ ID, Secret string }
	if err := json.Unmarshal([]byte(body), &ep); code != http.StatusCreated || err != nil || !strings.HasPrefix(ep.Secret, "whsec_") {
		t.Fatalf("create: %d %s", code, body)
	}
	reqID := hdr.Get("X-Request-Id")
	if code, _, body := call(http.MethodGet, "/v1/openapi.yaml", ""); code != http.StatusOK || !strings.HasPrefix(body, "openapi: 3.1") {
		t.Errorf("openapi.yaml: %d", code)
	}
	if code, _, stderr := relay(t, relayEnv(), "healthcheck", "--http-addr="+addr, "--path=/healthz"); code != 0 {
		t.Errorf("relay healthcheck of relay serve: exit %d: %s", code, stderr)
	}
	if code, hdr, body := call(http.MethodGet, "/nowhere", ""); code != http.StatusNotFound || !strings.Contains(body, hdr.Get("X-Request-Id")) {
		t.Errorf("unknown path: %d %s", code, body)
	}
	// Insecure endpoints are off unless RELAY_ALLOW_INSECURE_ENDPOINTS=true.
	if code, _, body := call(http.MethodPost, "/v1/webhook-endpoints", `{"url": "http://127.0.0.1:9/x", "event_types": ["cut.completed"]}`); code != http.StatusUnprocessableEntity || !strings.Contains(body, `"param":"url"`) {
		t.Errorf("http URL: %d %s", code, body)
	}

	// A request in flight when SIGTERM arrives (Svix holds it).
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	b.fake.SetInterceptor(func(*svixfake.Request) (svixfake.Reply, bool) {
		select {
		case held <- struct{}{}:
		default:
		}
		<-release
		return svixfake.Reply{}, false
	})
	t.Cleanup(func() { close(release) })
	inflight := make(chan int, 1)
	go func() {
		code, _, _ := call(http.MethodGet, "/v1/webhook-endpoints", "")
		inflight <- code
	}()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the request never reached Svix")
	}
	took := p.stop(t, 10*time.Second)
	t.Logf("relay serve exited 0 %s after SIGTERM with a request in flight", took.Round(10*time.Millisecond))
	if code := <-inflight; code != http.StatusServiceUnavailable {
		t.Errorf("a request held by Svix past the shutdown timeout got %d, want 503 (answered before exit)", code)
	}

	logs := p.stderr.String()
	for name, s := range map[string]string{"API key": key, "signing secret": ep.Secret, "svix token": svixfake.DefaultToken} {
		if strings.Contains(logs, s) || strings.Contains(p.stdout.String(), s) {
			t.Errorf("relay serve's output contains the %s", name)
		}
	}
	found := false
	for _, l := range p.logLines() {
		if l["msg"] == "request" && l["request_id"] == reqID {
			found = l["route"] == "POST /v1/webhook-endpoints" && l["app_id"] == "acme" && l["status"] == float64(201) && l["method"] == "POST" && l["duration"] != nil
		}
	}
	if !found {
		t.Errorf("no access log line for the create (request %s) with route, app_id, status, duration:\n%s", reqID, logs)
	}
}
