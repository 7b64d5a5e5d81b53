package svixfake_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
	"go.uber.org/goleak"

	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait in these tests; it is a safety net, not a
// timing assertion.
const testTimeout = 10 * time.Second

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// bundle is what setup returns.
type bundle struct {
	srv    *svixfake.Server
	client *svix.Svix
	hdrs   *headerRecorder
	clock  *testClock // nil unless setupWithClock
}

// setup starts a fake with cfg and a client for its default token.
func setup(t *testing.T, cfg svixfake.Config) *bundle {
	t.Helper()
	srv := svixfake.NewStarted(t, cfg)
	hdrs := &headerRecorder{}
	return &bundle{
		srv:    srv,
		client: newClient(t, srv.URL(), svixfake.DefaultToken, hdrs),
		hdrs:   hdrs,
	}
}

// setupWithClock is setup with a manual clock.
func setupWithClock(t *testing.T, cfg svixfake.Config) *bundle {
	t.Helper()
	clock := &testClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg.Now = clock.Now
	b := setup(t, cfg)
	b.clock = clock
	return b
}

// newClient builds a real Svix client (testkit.SvixClient). hdrs, when
// set, records response headers, which the client otherwise drops.
func newClient(t *testing.T, serverURL, token string, hdrs *headerRecorder) *svix.Svix {
	t.Helper()
	if hdrs == nil {
		return testkit.SvixClient(t, serverURL, token)
	}
	return testkit.SvixClient(t, serverURL, token, func(rt http.RoundTripper) http.RoundTripper {
		hdrs.next = rt
		return hdrs
	})
}

// headerRecorder keeps the response headers of the last response.
type headerRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	last http.Header
}

func (h *headerRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.next.RoundTrip(r)
	if err == nil {
		h.mu.Lock()
		h.last = resp.Header.Clone()
		h.mu.Unlock()
	}
	return resp, err
}

func (h *headerRecorder) Last() http.Header {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// testClock is a manual clock for Config.Now.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// svixErr asserts err is a *svix.Error with status and returns its body.
func svixErr(t *testing.T, err error, status int) errorBody {
	t.Helper()
	var se *svix.Error
	if !errors.As(err, &se) {
		t.Fatalf("error = %v (%T), want *svix.Error with status %d", err, err, status)
	}
	if se.Status() != status {
		t.Fatalf("status = %d, want %d; body %s", se.Status(), status, se.Body())
	}
	var body errorBody
	if err := json.Unmarshal(se.Body(), &body); err != nil {
		t.Fatalf("decode error body %q: %v", se.Body(), err)
	}
	return body
}

// errorBody decodes both Svix error shapes.
type errorBody struct {
	Code   string          `json:"code"`
	Detail json.RawMessage `json:"detail"`
}

// validationItems decodes a 422 detail list.
func (b errorBody) validationItems(t *testing.T) []validationItem {
	t.Helper()
	var items []validationItem
	if err := json.Unmarshal(b.Detail, &items); err != nil {
		t.Fatalf("422 detail %s is not a list: %v", b.Detail, err)
	}
	return items
}

type validationItem struct {
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
	Type string   `json:"type"`
}

func uniqueID(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func ptr[T any](v T) *T { return &v }

// lastRequest is the newest request srv recorded; the test fails, rather
// than panics, when there is none.
func lastRequest(t *testing.T, srv *svixfake.Server) svixfake.Request {
	t.Helper()
	reqs := srv.Requests()
	if len(reqs) == 0 {
		t.Fatal("the fake recorded no request")
	}
	return reqs[len(reqs)-1]
}

// onlyMessage is the one message srv holds for app; the test fails when it
// holds none or several.
func onlyMessage(t *testing.T, srv *svixfake.Server, app string) svixfake.Message {
	t.Helper()
	msgs := srv.Messages(app)
	if len(msgs) != 1 {
		t.Fatalf("the fake holds %d messages for %s, want 1", len(msgs), app)
	}
	return msgs[0]
}

// createApp makes an app with a fresh uid and returns that uid.
func createApp(t *testing.T, client *svix.Svix) string {
	t.Helper()
	uid := uniqueID("app-test-")
	if _, err := client.Application.GetOrCreate(testContext(t), models.ApplicationIn{Name: uid, Uid: &uid}, nil); err != nil {
		t.Fatalf("create app: %v", err)
	}
	return uid
}

// send creates a message with the given key and eventId.
func send(t *testing.T, client *svix.Svix, app, eventType, key string, eventID *string, payload map[string]any) (*models.MessageOut, error) {
	t.Helper()
	var opts *svix.MessageCreateOptions
	if key != "" {
		opts = &svix.MessageCreateOptions{IdempotencyKey: &key}
	}
	return client.Message.Create(testContext(t), app, models.MessageIn{
		EventType: eventType,
		EventId:   eventID,
		Payload:   payload,
	}, opts)
}

func mustSend(t *testing.T, client *svix.Svix, app, eventType, key string, eventID *string, payload map[string]any) *models.MessageOut {
	t.Helper()
	out, err := send(t, client, app, eventType, key, eventID, payload)
	if err != nil {
		t.Fatalf("create message: %v", err)
	}
	return out
}

func msgIn(eventType string, eventID *string) models.MessageIn {
	return models.MessageIn{EventType: eventType, EventId: eventID, Payload: map[string]any{"k": "v"}}
}

// rawResponse is an HTTP answer read in full.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// rawDo sends method url with body, a bearer token (none if empty) and
// extra headers, on a transport of its own, and reads the answer.
func rawDo(t *testing.T, method, url, token, body string, hdr http.Header) rawResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: got}
}
