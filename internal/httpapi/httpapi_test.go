package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func serve(h http.Handler, method, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, "/x", strings.NewReader(body)))
	return rec
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	type body struct {
		Name  string   `json:"name"`
		Count int      `json:"count"`
		Tags  []string `json:"tags"`
	}
	h := Chain(HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		var b body
		if _, err := DecodeJSON(w, r, &b); err != nil {
			return err
		}
		WriteJSON(w, http.StatusOK, b)
		return nil
	}), RequestID)
	for _, tc := range []struct {
		name, body  string
		status      int
		code, param string
	}{
		{"ok", `{"name":"a","count":1}`, 200, "", ""},
		{"empty", ``, 400, "invalid_json", ""},
		{"syntax", `{"name":`, 400, "invalid_json", ""},
		{"array", `[1]`, 400, "invalid_json", ""},
		{"trailing", `{"name":"a"} {"name":"b"}`, 400, "invalid_json", ""},
		{"trailing garbage", `{"name":"a"} x`, 400, "invalid_json", ""},
		{"unknown field", `{"name":"a","nmae":"b"}`, 400, "unknown_field", "nmae"},
		{"wrong type", `{"count":"one"}`, 422, "invalid_type", "count"},
		{"too large", `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 413, "request_too_large", ""},
	} {
		rec := serve(h, http.MethodPost, tc.body)
		if rec.Code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, rec.Body, tc.status)
			continue
		}
		if tc.status == 200 {
			continue
		}
		var env envelope
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		param := ""
		if env.Error.Param != nil {
			param = *env.Error.Param
		}
		if env.Error.Code != tc.code || param != tc.param || env.Error.RequestID != rec.Header().Get(RequestIDHeader) {
			t.Errorf("%s: %+v, want %s %q", tc.name, env.Error, tc.code, tc.param)
		}
	}
}

func TestWriteErrorHidesCauses(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	h := Chain(HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return errors.New("dial tcp 10.0.0.7:5432: password authentication failed")
	}), RequestID, AccessLog(log), Recover(log))
	rec := serve(h, http.MethodGet, "")
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "10.0.0.7") || !strings.Contains(rec.Body.String(), `"internal_error"`) {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
	entries := logs.FilterMessage("request").All()
	if len(entries) != 1 || entries[0].Level != zapcore.ErrorLevel || !strings.Contains(entries[0].ContextMap()["error"].(string), "10.0.0.7") {
		t.Errorf("access log %+v: want one error line with the cause", entries)
	}
}

func TestNestedMiddlewareKeepsOneIDAndOneLine(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	var inner string
	leaf := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { inner = RequestIDFrom(r.Context()) })
	h := Chain(Chain(leaf, RequestID, AccessLog(log)), RequestID, AccessLog(log))
	rec := serve(h, http.MethodGet, "")
	if id := rec.Header().Get(RequestIDHeader); id == "" || id != inner || !strings.HasPrefix(id, "req_") {
		t.Errorf("outer id %q, inner %q", id, inner)
	}
	if n := logs.Len(); n != 1 {
		t.Errorf("%d log lines, want 1", n)
	}
}

func TestRecover(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(core)
	h := Chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }), RequestID, AccessLog(log), Recover(log))
	rec := serve(h, http.MethodGet, "")
	if rec.Code != 500 || logs.FilterMessage("handler panicked").Len() != 1 {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	l := NewRateLimiter(1, 2)
	now := time.Unix(1_800_000_000, 0)
	if l.wait("a", now) != 0 || l.wait("a", now) != 0 {
		t.Fatal("the burst is refused")
	}
	if d := l.wait("a", now); d <= 0 || d > time.Second {
		t.Errorf("third request waits %s, want (0, 1s]", d)
	}
	if l.wait("b", now) != 0 {
		t.Error("another key is limited")
	}
	if l.wait("a", now.Add(time.Second)) != 0 {
		t.Error("a key is still limited after its refill")
	}
	// Idle buckets go, so memory follows the keys in use.
	l.wait("c", now.Add(time.Hour))
	l.mu.Lock()
	n := len(l.buckets)
	l.mu.Unlock()
	if n != 1 {
		t.Errorf("%d buckets after an hour, want only the one in use", n)
	}

	core, _ := observer.New(zapcore.InfoLevel)
	h := Chain(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), RequestID, AccessLog(zap.New(core)),
		Authenticate(staticAuth{}), NewRateLimiter(0.001, 1).Middleware)
	serve(h, http.MethodGet, "")
	rec := serve(h, http.MethodGet, "")
	if rec.Code != 429 || rec.Header().Get("Retry-After") == "" || !bytes.Contains(rec.Body.Bytes(), []byte(`"rate_limit_error"`)) {
		t.Errorf("over the limit: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
}
