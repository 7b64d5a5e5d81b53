package main_test

// These tests drive the relay binary the way an operator and an independent
// checker would: they build it once, start it as a subprocess with its
// settings in the environment, and look only at its exit code, its output,
// the database (SQL), its HTTP endpoints and what an in-process fake Svix
// received.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/mediaplatform/relay/internal/msgkey"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/internal/testkit"
)

// relayBin is the relay binary built by TestMain.
var relayBin string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "relay-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	relayBin = filepath.Join(dir, "relay")
	build := exec.Command("go", "build", "-o", relayBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build the relay binary: %v\n", err)
		return 1
	}

	code := m.Run()
	if code == 0 {
		// pgtest's shared admin pool lives as long as the process.
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck")); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			return 1
		}
	}
	return code
}

// httpClient keeps no idle connections, which goleak would report.
var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// relayEnv is the environment of a relay process: the test process's
// without any setting the relay reads, plus kv ("NAME=value"; a later
// entry wins).
func relayEnv(kv ...string) []string {
	var env []string
	for _, e := range os.Environ() {
		name, _, _ := strings.Cut(e, "=")
		if name == "DATABASE_URL" || name == "TEST_DATABASE_URL" ||
			strings.HasPrefix(name, "SVIX_") || strings.HasPrefix(name, "RELAY_") {
			continue
		}
		env = append(env, e)
	}
	return append(env, kv...)
}

// runEnv is the environment of `relay run` on dbURL sending to fake, with
// the short timings of the tests; extra overrides any of it.
func runEnv(dbURL string, fake *svixfake.Server, extra ...string) []string {
	return relayEnv(append([]string{
		"DATABASE_URL=" + dbURL,
		"SVIX_AUTH_TOKEN=" + svixfake.DefaultToken,
		"SVIX_SERVER_URL=" + fake.URL(),
		"RELAY_HTTP_ADDR=127.0.0.1:0",
		"RELAY_LOG_FORMAT=json",
		"RELAY_JOB_TIMEOUT=3s",
		"RELAY_SVIX_TIMEOUT=1s",
		"RELAY_RESCUE_AFTER=4s",
		"RELAY_BACKOFF_MIN=100ms",
		"RELAY_BACKOFF_MAX=1s",
		"RELAY_POLL_INTERVAL=200ms",
		"RELAY_SHUTDOWN_TIMEOUT=3s",
	}, extra...)...)
}

// process is a relay subprocess.
type process struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr testkit.LogBuffer
	done           chan struct{}
	code           int // exit code, once done is closed; -1 when killed by a signal
}

// start starts `relay args...` with env. When the test ends, a process
// still running is stopped (SIGTERM, then SIGKILL) and, if the test
// failed, its output is logged.
func start(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	p := &process{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(relayBin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		if p.running() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s did not stop within 10s of SIGTERM; killing it", name)
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("%s (relay %s) exit %d\nstdout:\n%s\nstderr:\n%s",
				name, strings.Join(args, " "), p.code, p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

// relay runs `relay args...` with env to completion and returns its exit
// code and output.
func relay(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, "relay "+strings.Join(args, " "), env, args...)
	code = p.wait(t, time.Minute)
	return code, p.stdout.String(), p.stderr.String()
}

func (p *process) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// wait waits up to timeout for the process to exit and returns its code.
func (p *process) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s", p.name, timeout)
		return 0
	}
}

func (p *process) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// stop sends SIGTERM and fails the test unless the process exits 0 within
// the bound; it returns how long the exit took.
func (p *process) stop(t *testing.T, bound time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	p.signal(t, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(bound):
		t.Fatalf("%s did not exit within %s of SIGTERM", p.name, bound)
	}
	took := time.Since(began)
	if p.code != 0 {
		t.Fatalf("%s exited %d after SIGTERM, want 0", p.name, p.code)
	}
	return took
}

// logLines decodes the process's JSON log lines (other lines are skipped).
func (p *process) logLines() []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(p.stderr.String()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// countLogs counts log lines whose msg is msg.
func (p *process) countLogs(msg string) int {
	n := 0
	for _, l := range p.logLines() {
		if l["msg"] == msg {
			n++
		}
	}
	return n
}

// httpAddr waits for the relay's "http server listening" log line and
// returns the address in it.
func (p *process) httpAddr(t *testing.T) string {
	t.Helper()
	var addr string
	waitFor(t, 30*time.Second, p.name+" to log its HTTP address", func() bool {
		if !p.running() {
			t.Fatalf("%s exited %d before serving HTTP", p.name, p.code)
		}
		for _, l := range p.logLines() {
			if a, ok := l["addr"].(string); ok && l["msg"] == "http server listening" {
				addr = a
				return true
			}
		}
		return false
	})
	return addr
}

// waitReady waits until the relay's /readyz answers 200 and returns its
// HTTP address.
func (p *process) waitReady(t *testing.T) string {
	t.Helper()
	addr := p.httpAddr(t)
	waitFor(t, 30*time.Second, p.name+" to be ready", func() bool {
		if !p.running() {
			t.Fatalf("%s exited %d before it was ready", p.name, p.code)
		}
		code, _ := get(t, "http://"+addr+"/readyz")
		return code == http.StatusOK
	})
	return addr
}

// get fetches url; a transport error is status 0.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitFor is testkit.WaitFor under the short name this package's tests
// call it by.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, timeout, what, cond)
}

// waitFake waits on the fake's own state.
func waitFake(t *testing.T, fake *svixfake.Server, timeout time.Duration, what string, cond func(*svixfake.Server) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	if err := fake.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// count counts outbox rows matching where; a query error is -1 (the
// database may be restarting).
func count(t *testing.T, pool *pgxpool.Pool, where string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE "+where).Scan(&n); err != nil {
		t.Logf("count outbox rows where %s: %v", where, err)
		return -1
	}
	return n
}

const deliveredSQL = "delivered_at IS NOT NULL AND svix_message_id IS NOT NULL AND failed_at IS NULL"

// waitDelivered waits until n rows are delivered and returns when.
func waitDelivered(t *testing.T, pool *pgxpool.Pool, n int, timeout time.Duration) time.Time {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%d delivered rows", n), func() bool {
		return count(t, pool, deliveredSQL) >= n
	})
	return time.Now()
}

// insertRows inserts n rows with plain SQL, in statements of at most per
// rows, spread over a few apps.
func insertRows(t *testing.T, pool *pgxpool.Pool, n, per int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for from := 1; from <= n; from += per {
		to := min(from+per-1, n)
		_, err := pool.Exec(ctx, `
			INSERT INTO outbox (app_id, event_type, data)
			SELECT 'app-' || (i % 7), 'render.completed',
			       jsonb_build_object('entity_id', 'render_' || i, 'asset_id', 'asset_' || i, 'seq', i)
			  FROM generate_series($1::int, $2::int) AS i`, from, to)
		if err != nil {
			t.Fatalf("insert outbox rows %d..%d: %v", from, to, err)
		}
	}
}

// outboxRow is an outbox row as a checker reads it.
type outboxRow struct {
	ID          int64
	CreatedAt   time.Time
	AppID       string
	EventType   string
	Data        json.RawMessage
	Attempts    int
	DeliveredAt *time.Time
	SvixMsgID   *string
	FailedAt    *time.Time
	LastError   *string
	Resends     int
}

func (r outboxRow) key() string { return msgkey.Format(r.ID, r.CreatedAt, r.Resends) }

func readRows(t *testing.T, pool *pgxpool.Pool) []outboxRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rows, err := pool.Query(ctx, `
		SELECT id, created_at, app_id, event_type, data, attempts, delivered_at, svix_message_id, failed_at, last_error, resends
		  FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.ID, &r.CreatedAt, &r.AppID, &r.EventType, &r.Data, &r.Attempts,
			&r.DeliveredAt, &r.SvixMsgID, &r.FailedAt, &r.LastError, &r.Resends); err != nil {
			t.Fatalf("read outbox: %v", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return out
}

// assertExactlyOnce checks the end state every delivery test wants: every
// row delivered, and Svix holding exactly one message per row, whose
// eventId and idempotency key are the row's key and whose id is the row's
// svix_message_id. Repeated sends of a key may have reached the fake, but
// only as idempotent replays or 409s, never as a second message.
func assertExactlyOnce(t *testing.T, pool *pgxpool.Pool, fake *svixfake.Server, want int) []outboxRow {
	t.Helper()
	rows := readRows(t, pool)
	if len(rows) != want {
		t.Fatalf("outbox has %d rows, want %d", len(rows), want)
	}
	byKey := make(map[string]outboxRow, len(rows))
	for _, r := range rows {
		if r.DeliveredAt == nil || r.SvixMsgID == nil || r.FailedAt != nil {
			t.Errorf("row %d: delivered_at=%v svix_message_id=%v failed_at=%v, want delivered",
				r.ID, r.DeliveredAt, deref(r.SvixMsgID), r.FailedAt)
		}
		byKey[r.key()] = r
	}

	t.Logf("svix answered (status: count): %v", fake.StatusCounts())
	msgs := fake.AllMessages()
	if len(msgs) != want {
		t.Errorf("svix accepted %d messages, want %d (one per row)", len(msgs), want)
	}
	seen := make(map[string]svixfake.Message, len(msgs))
	for _, m := range msgs {
		if prev, dup := seen[m.EventID]; dup {
			t.Errorf("svix accepted two messages with eventId %s: %s and %s", m.EventID, prev.ID, m.ID)
			continue
		}
		seen[m.EventID] = m
		r, ok := byKey[m.EventID]
		switch {
		case !ok:
			t.Errorf("svix message %s has eventId %q, the key of no outbox row", m.ID, m.EventID)
		case m.IdempotencyKey != m.EventID:
			t.Errorf("svix message %s: idempotency key %q, eventId %q; want both the row's key", m.ID, m.IdempotencyKey, m.EventID)
		case m.AppUID != r.AppID || m.EventType != r.EventType:
			t.Errorf("svix message %s: app %q type %q, row %d has %q %q", m.ID, m.AppUID, m.EventType, r.ID, r.AppID, r.EventType)
		case r.SvixMsgID != nil && *r.SvixMsgID != m.ID:
			t.Errorf("row %d: svix_message_id %s, svix holds %s for its key", r.ID, *r.SvixMsgID, m.ID)
		}
	}
	for key, r := range byKey {
		if _, ok := seen[key]; !ok {
			t.Errorf("row %d: svix holds no message with its key %s", r.ID, key)
		}
	}
	return rows
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// replays counts message creates the fake answered from its idempotency
// store or with 409: repeated sends of a key.
func replays(fake *svixfake.Server) (replayed, conflicts int) {
	for _, r := range fake.Requests() {
		if r.Method != http.MethodPost || r.EventID == "" {
			continue
		}
		if r.Replayed {
			replayed++
		}
		if r.Status == http.StatusConflict {
			conflicts++
		}
	}
	return replayed, conflicts
}
