package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/server"
)

func TestReadyzReason(t *testing.T) {
	t.Parallel()

	detail := errors.New("failed to connect to `user=relay database=app`: 10.1.2.3:5432 (db.internal): dial error: connection refused")
	core, logs := observer.New(zap.DebugLevel)
	srv := httptest.NewServer(server.Handler(server.Config{
		Ready:  func(context.Context) error { return fmt.Errorf("database: %w", detail) },
		Logger: zap.New(core),
	}))
	t.Cleanup(srv.Close)

	code, body := get(t, srv, "/readyz", "", "")
	if code != http.StatusServiceUnavailable || body != "not ready: database\n" {
		t.Errorf("/readyz: %d %q, want 503 %q", code, body, "not ready: database\n")
	}
	for _, leak := range []string{"10.1.2.3", "user=relay", "database=app", "db.internal"} {
		if strings.Contains(body, leak) {
			t.Errorf("/readyz tells the client %q: %q", leak, body)
		}
	}
	entries := logs.FilterMessage("not ready").All()
	if len(entries) != 1 {
		t.Fatalf("logged %d \"not ready\" entries, want 1 with the detail", len(entries))
	}
	if got := entries[0].ContextMap()["error"]; !strings.Contains(fmt.Sprint(got), "10.1.2.3:5432") {
		t.Errorf("the log entry's error %q lacks the driver's detail", got)
	}
}

func TestReason(t *testing.T) {
	t.Parallel()

	inner := errors.New("dial tcp 10.0.0.1:5432: connection refused")
	for _, tt := range []struct {
		err  error
		want string
	}{
		{errors.New("svix rejects the auth token"), "svix rejects the auth token"},
		{fmt.Errorf("database: %w", inner), "database"},
		{fmt.Errorf("ping: %w", fmt.Errorf("database: %w", inner)), "ping"},
		{fmt.Errorf("%w", inner), "check failed"},
		{inner, "check failed"}, // a driver's error, unwrapped
		{fmt.Errorf("failed to connect to `user=relay database=app`: %w", inner), "check failed"},
		{errors.New("river client is not running"), "river client is not running"},
	} {
		if got := server.Reason(tt.err); got != tt.want {
			t.Errorf("Reason(%q) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestServerLimits(t *testing.T) {
	t.Parallel()

	t.Run("Defaults", func(t *testing.T) {
		t.Parallel()
		c := server.Config{}.WithDefaults()
		if c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0 {
			t.Errorf("defaults leave a timeout unset: %+v", c)
		}
		// /readyz checks for up to 5 s: the write timeout must outlast it.
		if c.WriteTimeout <= 5*time.Second {
			t.Errorf("WriteTimeout %s does not outlast /readyz's 5 s check", c.WriteTimeout)
		}
		if c.MaxHeaderBytes <= 0 || c.MaxHeaderBytes >= http.DefaultMaxHeaderBytes {
			t.Errorf("MaxHeaderBytes %d, want a cap below Go's 1 MiB default", c.MaxHeaderBytes)
		}
	})

	start := func(t *testing.T, cfg server.Config) string {
		t.Helper()
		cfg.Addr = "127.0.0.1:0"
		cfg.Ready = func(context.Context) error { return nil }
		cfg.Logger = zaptest.NewLogger(t)
		s, err := server.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
		return s.Addr()
	}

	t.Run("HeaderCap", func(t *testing.T) {
		t.Parallel()
		addr := start(t, server.Config{}) // the defaults
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/healthz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Padding", strings.Repeat("x", 200<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("200 KiB of headers: %d, want 431", resp.StatusCode)
		}
		// A request like River UI's (basic auth, cookies, a browser's
		// headers) passes.
		req.Header.Set("X-Padding", strings.Repeat("x", 8<<10))
		req.SetBasicAuth("oncall", strings.Repeat("p", 64))
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("8 KiB of headers: %d, want 200", resp.StatusCode)
		}
	})

	// closed reports whether the server closes conn (an idle or stalled
	// client) within bound.
	closed := func(t *testing.T, conn net.Conn, r *bufio.Reader, bound time.Duration) bool {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(bound))
		_, err := r.ReadByte()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		return err != nil
	}

	t.Run("IdleConnectionClosed", func(t *testing.T) {
		t.Parallel()
		addr := start(t, server.Config{IdleTimeout: 200 * time.Millisecond})
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if !closed(t, conn, r, 20*time.Second) {
			t.Error("an idle keep-alive connection stays open: no idle timeout")
		}
	})

	t.Run("StalledBodyClosed", func(t *testing.T) {
		t.Parallel()
		addr := start(t, server.Config{ReadTimeout: 300 * time.Millisecond})
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Headers announce a body that never comes.
		fmt.Fprint(conn, "POST /riverui/api/jobs/cancel HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n{")
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if !closed(t, conn, r, 20*time.Second) {
			t.Error("a request whose body stalls keeps its connection: no read timeout")
		}
	})
}

func TestRiverUICrossSite(t *testing.T) {
	t.Parallel()

	pool := pgtest.Pool(t)
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ui, err := server.RiverUI(ctx, client, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.Handler(server.Config{
		Ready:         func(context.Context) error { return nil },
		Admin:         ui,
		AdminPrefix:   server.RiverUIPrefix,
		AdminUser:     "oncall",
		AdminPassword: "s3cret-pass-long",
	}))
	t.Cleanup(srv.Close)

	inserted, err := client.Insert(ctx, noopArgs{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jobID := inserted.Job.ID
	state := func() string {
		t.Helper()
		var s string
		if err := pool.QueryRow(ctx, "SELECT state FROM river_job WHERE id = $1", jobID).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	cancelJob := func(header, value string) int {
		t.Helper()
		body := strings.NewReader(fmt.Sprintf(`{"ids":["%d"]}`, jobID))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/riverui/api/jobs/cancel", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("oncall", "s3cret-pass-long")
		if header != "" {
			req.Header.Set(header, value)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}

	for _, tc := range []struct{ header, value string }{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Origin", "https://evil.example"},
	} {
		if code := cancelJob(tc.header, tc.value); code != http.StatusForbidden {
			t.Errorf("cancel with %s: %s and valid credentials: %d, want 403", tc.header, tc.value, code)
		}
		if s := state(); s != "available" {
			t.Fatalf("after a cross-site cancel (%s: %s) the job is %s, want available", tc.header, tc.value, s)
		}
	}
	// Reading is a safe method: a cross-site GET still works (the browser
	// keeps the answer from the other site).
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/riverui/api/jobs?state=available", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("oncall", "s3cret-pass-long")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("cross-site GET: %d, want 200", resp.StatusCode)
	}

	// From River UI's own page, and from a script without browser headers,
	// a cancel goes through.
	if code := cancelJob("Sec-Fetch-Site", "same-origin"); code != http.StatusOK {
		t.Errorf("same-origin cancel: %d, want 200", code)
	}
	if s := state(); s != "cancelled" {
		t.Errorf("after a same-origin cancel the job is %s, want cancelled", s)
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()

	admin := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "admin") })
	srv := httptest.NewServer(server.Handler(server.Config{
		Ready: func(context.Context) error { return nil }, Admin: admin, AdminPrefix: "/admin",
		AdminUser: "oncall", AdminPassword: "s3cret-pass-long",
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		user, password string
		want           int
	}{
		{"oncall", "s3cret-pass-long", http.StatusOK},
		{"oncall", "s3cret-pass-lon", http.StatusUnauthorized},    // a prefix
		{"oncall", "s3cret-pass-longer", http.StatusUnauthorized}, // longer
		{"oncal", "s3cret-pass-long", http.StatusUnauthorized},
		{"", "s3cret-pass-long", http.StatusUnauthorized},
		{"oncall", "", http.StatusUnauthorized},
		{"s3cret-pass-long", "oncall", http.StatusUnauthorized},
	} {
		if code, _ := get(t, srv, "/admin/", tc.user, tc.password); code != tc.want {
			t.Errorf("user %q password %q: %d, want %d", tc.user, tc.password, code, tc.want)
		}
	}
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }
