package live_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/testkit"
	"github.com/mediaplatform/relay/live"
)

func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}

var secret = []byte("test-secret-of-at-least-32-bytes-long")

type bundle struct {
	pool *pgxpool.Pool
	h    *live.Handler
	srv  *httptest.Server
	cfg  live.Config
}

// setup runs a live Handler on a migrated schema of its own, behind a
// real HTTP server. mod adjusts the configuration.
func setup(t *testing.T, mod func(*live.Config), srvMod ...func(*http.Server)) *bundle {
	t.Helper()
	pool := pgtest.Pool(t)
	cfg := live.Config{DB: pool, Secret: secret, PollInterval: 100 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	h, err := live.New(cfg)
	if err != nil {
		t.Fatalf("live.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := h.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	srv := httptest.NewUnstartedServer(h)
	for _, m := range srvMod {
		m(srv.Config)
	}
	srv.Start()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
	})
	return &bundle{pool: pool, h: h, srv: srv, cfg: cfg}
}

func token(t *testing.T, app string) string {
	t.Helper()
	tok, err := live.Mint(secret, app, time.Hour)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok
}

const insertSQL = `INSERT INTO outbox (app_id, event_type, data)
VALUES ($1, $2, jsonb_build_object('entity_id', $3::text, 'asset_id', $4::text))`

const insertReadySQL = `INSERT INTO outbox (app_id, event_type, data)
VALUES ($1, 'asset.ready', jsonb_build_object('entity_id', $2::text, 'asset_id', $3::text, 'previous_state', 'processing'))`

func add(t *testing.T, db interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, app, typ, entity, asset string) {
	t.Helper()
	var one int
	if err := db.QueryRow(context.Background(), "WITH i AS ("+insertSQL+" RETURNING 1) SELECT count(*) FROM i", app, typ, entity, asset).Scan(&one); err != nil {
		t.Fatalf("insert %s %s: %v", app, entity, err)
	}
}

// sse is one frame read from a stream: an event, an id-only frame (Event
// and Data empty), or a comment.
type sse struct {
	ID, Event, Data, Comment string
	Retry                    string
}

type body struct {
	Type      string          `json:"type"`
	Data      json.RawMessage `json:"data"`
	CreatedAt string          `json:"created_at"`
}

func (e sse) entity(t *testing.T) string {
	t.Helper()
	var b struct {
		Data struct {
			EntityID string `json:"entity_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(e.Data), &b); err != nil {
		t.Fatalf("event data %q: %v", e.Data, err)
	}
	return b.Data.EntityID
}

// stream is an open SSE response read in the background.
type stream struct {
	resp   *http.Response
	frames chan sse
	done   chan struct{} // closed when the body ends
	cancel context.CancelFunc
	mu     sync.Mutex
	lastID string
}

// open starts GET /v1/live with a bearer token for app (or the headers
// given) and fails unless it is 200.
func (b *bundle) open(t *testing.T, app, query string, hdr ...string) *stream {
	t.Helper()
	resp, cancel := b.get(t, app, query, hdr...)
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("GET /v1/live%s: %d %s", query, resp.StatusCode, raw)
	}
	s := &stream{resp: resp, frames: make(chan sse, 10000), done: make(chan struct{}), cancel: cancel}
	go s.read()
	t.Cleanup(s.close)
	return s
}

// get sends GET /v1/live; hdr are name, value pairs (a bearer token for
// app is added unless hdr sets Authorization or app is empty).
func (b *bundle) get(t *testing.T, app, query string, hdr ...string) (*http.Response, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+live.Path+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	if app != "" {
		req.Header.Set("Authorization", "Bearer "+token(t, app))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /v1/live: %v", err)
	}
	return resp, cancel
}

func (s *stream) read() {
	defer close(s.done)
	sc := bufio.NewScanner(s.resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var cur sse
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur != (sse{}) {
				s.frames <- cur
			}
			cur = sse{}
		case strings.HasPrefix(line, ":"):
			s.frames <- sse{Comment: strings.TrimSpace(line[1:])}
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				cur.ID = v
			case "event":
				cur.Event = v
			case "data":
				cur.Data = v
			case "retry":
				cur.Retry = v
			}
		}
	}
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

// next returns the next event (frames with an event type), skipping
// comments and id-only frames.
func (s *stream) next(t *testing.T) sse {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f := <-s.frames:
			if f.ID != "" {
				s.mu.Lock()
				s.lastID = f.ID
				s.mu.Unlock()
			}
			if f.Event != "" {
				return f
			}
		case <-s.done:
			select {
			case f := <-s.frames:
				if f.Event != "" {
					return f
				}
				continue
			default:
			}
			t.Fatal("the stream ended while an event was expected")
		case <-timeout:
			t.Fatal("no event within 10s")
		}
	}
}

// entities reads n events and returns their entity ids.
func (s *stream) entities(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		out = append(out, s.next(t).entity(t))
	}
	return out
}

// expectNext reads len(want) events and checks their entity ids, in
// order.
func (s *stream) expectNext(t *testing.T, want ...string) {
	t.Helper()
	got := s.entities(t, len(want))
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func (s *stream) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastID
}

// ended waits for the server to end the stream.
func (s *stream) ended(t *testing.T) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end within 10s")
	}
}

// envelope reads an error answer.
func envelope(t *testing.T, resp *http.Response) (code, param string) {
	t.Helper()
	defer resp.Body.Close()
	var e struct {
		Error struct {
			Type, Code, Message, RequestID string
			Param                          *string
		} `json:"error"`
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error answer Content-Type %q, want application/json", ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("decode envelope: %v", err)
	}
	if e.Error.Message == "" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("envelope without message or X-Request-Id: %+v", e)
	}
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return e.Error.Code, param
}
