package server_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.uber.org/zap/zaptest"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/server"
)

// get fetches path from h, with basic auth when user is not empty.
func get(t *testing.T, srv *httptest.Server, path, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" || password != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHandler(t *testing.T) {
	t.Parallel()

	t.Run("HealthReadyMetrics", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "relay_test_total", Help: "test"})
		reg.MustRegister(c)
		c.Inc()
		var notReady atomic.Bool // read by the server's goroutines
		srv := httptest.NewServer(server.Handler(server.Config{
			Ready: func(context.Context) error {
				if notReady.Load() {
					return errors.New("svix rejects the auth token")
				}
				return nil
			},
			Gatherer: reg,
		}))
		t.Cleanup(srv.Close)

		if code, _ := get(t, srv, "/healthz", "", ""); code != http.StatusOK {
			t.Errorf("/healthz: %d, want 200", code)
		}
		if code, _ := get(t, srv, "/readyz", "", ""); code != http.StatusOK {
			t.Errorf("/readyz: %d, want 200", code)
		}
		notReady.Store(true)
		if code, body := get(t, srv, "/readyz", "", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "svix rejects") {
			t.Errorf("/readyz while not ready: %d %q, want 503 with the reason", code, body)
		}
		if code, body := get(t, srv, "/metrics", "", ""); code != http.StatusOK || !strings.Contains(body, "relay_test_total 1") {
			t.Errorf("/metrics: %d, body:\n%s", code, body)
		}
		if code, _ := get(t, srv, "/riverui/", "", ""); code != http.StatusNotFound {
			t.Errorf("/riverui/ without admin configured: %d, want 404", code)
		}
	})

	t.Run("ReadyGauge", func(t *testing.T) {
		t.Parallel()
		var notReady atomic.Bool
		reg := prometheus.NewRegistry()
		reg.MustRegister(server.ReadyGauge(func(context.Context) error {
			if notReady.Load() {
				return errors.New("database: down")
			}
			return nil
		}))
		srv := httptest.NewServer(server.Handler(server.Config{Ready: func(context.Context) error { return nil }, Gatherer: reg}))
		t.Cleanup(srv.Close)
		if _, body := get(t, srv, "/metrics", "", ""); !strings.Contains(body, "relay_ready 1") {
			t.Errorf("ready: /metrics lacks relay_ready 1:\n%s", body)
		}
		notReady.Store(true)
		if _, body := get(t, srv, "/metrics", "", ""); !strings.Contains(body, "relay_ready 0") {
			t.Errorf("not ready: /metrics lacks relay_ready 0:\n%s", body)
		}
	})

	t.Run("RiverUI", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		log := zaptest.NewLogger(t)
		client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		ui, err := server.RiverUI(ctx, client, log)
		if err != nil {
			t.Fatal(err)
		}
		cfg := server.Config{
			Ready:         func(context.Context) error { return nil },
			Admin:         ui,
			AdminPrefix:   server.RiverUIPrefix,
			AdminUser:     "oncall",
			AdminPassword: "s3cret-pass",
		}
		srv := httptest.NewServer(server.Handler(cfg))
		t.Cleanup(srv.Close)

		for _, path := range []string{"/riverui/", "/riverui/api/jobs?state=available"} {
			t.Run("NoCredentials"+path, func(t *testing.T) {
				if code, _ := get(t, srv, path, "", ""); code != http.StatusUnauthorized {
					t.Errorf("GET %s without credentials: %d, want 401", path, code)
				}
				if code, _ := get(t, srv, path, "oncall", "wrong"); code != http.StatusUnauthorized {
					t.Errorf("GET %s with a wrong password: %d, want 401", path, code)
				}
			})
		}
		code, body := get(t, srv, "/riverui/", "oncall", "s3cret-pass")
		if code != http.StatusOK || !strings.Contains(strings.ToLower(body), "<html") {
			t.Errorf("GET /riverui/ with credentials: %d, want 200 and the UI's page:\n%.300s", code, body)
		}
		code, body = get(t, srv, "/riverui/api/jobs?state=available", "oncall", "s3cret-pass")
		if code != http.StatusOK || !strings.Contains(body, `"data"`) {
			t.Errorf("GET /riverui/api/jobs with credentials: %d, want 200 and a job list:\n%.300s", code, body)
		}

		// Without a password the UI is never mounted, whatever is passed.
		cfg.AdminPassword = ""
		open := httptest.NewServer(server.Handler(cfg))
		t.Cleanup(open.Close)
		if code, _ := get(t, open, "/riverui/", "oncall", ""); code != http.StatusNotFound {
			t.Errorf("GET /riverui/ with the UI configured without a password: %d, want 404 (not mounted)", code)
		}
	})
}
