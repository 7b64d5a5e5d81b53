package endpoints_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/apikey"
	"github.com/mediaplatform/relay/endpoints"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/internal/testkit"
)

// TestMain checks that no goroutine outlives the tests; pgtest's shared
// admin pool lives for the whole run.
func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}

// testTimeout bounds every wait; a safety net, not a timing assertion.
const testTimeout = 30 * time.Second

// bundle is what setup returns.
type bundle struct {
	pool  *pgxpool.Pool
	fake  *svixfake.Server
	srv   *httptest.Server
	logs  *testkit.LogBuffer
	keys  *apikey.Store
	acme  string // an API key of account "acme"
	other string // an API key of account "initech"
}

// setup migrates a schema, starts the fake Svix and the API over a
// loopback listener, and makes a key for two accounts.
func setup(t *testing.T, mod ...func(*endpoints.Config)) *bundle {
	t.Helper()
	env := testkit.Start(t, svixfake.Config{})
	pool, fake, log, logs := env.Pool, env.Svix, env.Logger, env.Logs
	cfg := endpoints.Config{
		DB: pool, SvixToken: svixfake.DefaultToken, SvixServerURL: fake.URL(), Logger: log,
		RateLimit: -1, SvixTimeout: 2 * time.Second, RequestTimeout: 10 * time.Second,
	}
	for _, m := range mod {
		m(&cfg)
	}
	h, err := endpoints.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	keys := apikey.NewStore(pool)
	b := &bundle{pool: pool, fake: fake, srv: srv, logs: logs, keys: keys}
	_, b.acme, err = keys.Create(ctx(t), "acme", "acme test key")
	if err != nil {
		t.Fatal(err)
	}
	_, b.other, err = keys.Create(ctx(t), "initech", "initech test key")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return c
}

// response is an answer, decoded.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d %s: %v", r.status, r.body, err)
	}
}

// envelope is the error envelope.
type envelope struct {
	Error struct {
		Type      string  `json:"type"`
		Code      string  `json:"code"`
		Message   string  `json:"message"`
		Param     *string `json:"param"`
		RequestID string  `json:"request_id"`
	} `json:"error"`
}

func (r response) envelope(t *testing.T) envelope {
	t.Helper()
	var e envelope
	r.json(t, &e)
	if e.Error.Code == "" || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not an error envelope: %d %s", r.status, r.body)
	}
	if e.Error.RequestID == "" || e.Error.RequestID != r.header.Get("X-Request-Id") {
		t.Fatalf("request_id %q, X-Request-Id %q: want equal and set", e.Error.RequestID, r.header.Get("X-Request-Id"))
	}
	return e
}

func (r response) param() string {
	var e envelope
	_ = json.Unmarshal(r.body, &e)
	if e.Error.Param == nil {
		return ""
	}
	return *e.Error.Param
}

// req is one request to the API.
type req struct {
	method, path, key string
	body              string
	header            map[string]string
}

// do sends r and checks both sides against the OpenAPI document: the
// answer must be documented for the operation and match its schema and
// headers; a request the document refuses must be refused (4xx); every
// answer carries X-Request-Id.
func (b *bundle) do(t *testing.T, r req) response {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequestWithContext(ctx(t), r.method, b.srv.URL+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	if r.key != "" {
		hr.Header.Set("Authorization", "Bearer "+r.key)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := b.srv.Client().Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := response{status: resp.StatusCode, header: resp.Header, body: got}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s %s: no X-Request-Id", r.method, r.path)
	}
	checkOpenAPI(t, r, hr, out)
	return out
}

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
)

func router(t *testing.T) routers.Router {
	t.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		var doc *openapi3.T
		doc, specErr = loader.LoadFromData(endpoints.OpenAPI())
		if specErr != nil {
			return
		}
		if specErr = doc.Validate(loader.Context); specErr != nil {
			return
		}
		doc.Servers = nil // match the test server's address
		specRouter, specErr = legacy.NewRouter(doc)
	})
	if specErr != nil {
		t.Fatalf("openapi document: %v", specErr)
	}
	return specRouter
}

func checkOpenAPI(t *testing.T, r req, hr *http.Request, resp response) {
	t.Helper()
	// The request as sent, with its body again.
	vr := hr.Clone(context.Background())
	vr.Body = io.NopCloser(strings.NewReader(r.body))
	route, params, err := router(t).FindRoute(vr)
	if err != nil {
		if resp.status != http.StatusNotFound && resp.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: not in the OpenAPI document (%v) but answered %d", r.method, r.path, err, resp.status)
		}
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.RequestValidationInput{Request: vr, PathParams: params, Route: route, Options: opts}
	if reqErr := openapi3filter.ValidateRequest(context.Background(), in); reqErr != nil && (resp.status < 400 || resp.status >= 500) {
		t.Errorf("%s %s %s: the document refuses the request (%v) but the handler answered %d", r.method, r.path, r.body, reqErr, resp.status)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.status, Header: resp.header,
		Body: io.NopCloser(bytes.NewReader(resp.body)), Options: opts,
	}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s %s: answer %d %s does not match the OpenAPI document: %v", r.method, r.path, resp.status, resp.body, err)
	}
}

// createBody is a valid create body.
func createBody(url string, types ...string) string {
	if len(types) == 0 {
		types = []string{"cut.completed", "render.completed"}
	}
	b, _ := json.Marshal(map[string]any{"url": url, "event_types": types})
	return string(b)
}

// created is a create's answer.
type created struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	EventTypes  []string  `json:"event_types"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	Secret      string    `json:"secret"`
}

func (b *bundle) create(t *testing.T, key, url string, types ...string) created {
	t.Helper()
	r := b.do(t, req{method: http.MethodPost, path: "/v1/webhook-endpoints", key: key, body: createBody(url, types...)})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var c created
	r.json(t, &c)
	return c
}
