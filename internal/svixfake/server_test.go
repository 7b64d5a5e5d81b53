package svixfake_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mediaplatform/relay/internal/svixfake"
)

func TestMessageValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)
	url := b.srv.URL() + "/api/v1/app/" + app + "/msg"

	long := strings.Repeat("a", 257)
	for _, tc := range []struct {
		name string
		body string
		want validationItem
	}{
		{"missing event type", `{"payload":{}}`,
			validationItem{[]string{"body"}, "missing field `eventType`", "value_error.jsondecode"}},
		{"empty event type", `{"eventType":"","payload":{}}`,
			validationItem{[]string{"body", "eventType"}, "String must be at least one character", "value_error"}},
		{"event type with invalid characters", `{"eventType":"asset ready!","payload":{}}`,
			validationItem{[]string{"body", "eventType"}, `String must match the following pattern: [a-zA-Z0-9\-_.].`, "value_error"}},
		{"event type too long", `{"eventType":"` + long + `","payload":{}}`,
			validationItem{[]string{"body", "eventType"}, "String too long", "value_error"}},
		{"event type not a string", `{"eventType":7,"payload":{}}`,
			validationItem{[]string{"body", "eventType"}, "", "value_error.jsondecode"}},
		{"missing payload", `{"eventType":"a"}`,
			validationItem{[]string{"body"}, "missing field `payload`", "value_error.jsondecode"}},
		{"null payload", `{"eventType":"a","payload":null}`,
			validationItem{[]string{"body", "payload"}, "Payload must be an object.", "value_error"}},
		{"array payload", `{"eventType":"a","payload":[1]}`,
			validationItem{[]string{"body", "payload"}, "Payload must be an object.", "value_error"}},
		{"eventId with id prefix", `{"eventType":"a","eventId":"msg_1","payload":{}}`,
			validationItem{[]string{"body", "eventId"}, "Uids are not allowed to have the same prefix as the ID. Prefix with _?", "value_error"}},
		{"eventId with invalid characters", `{"eventType":"a","eventId":"row/1","payload":{}}`,
			validationItem{[]string{"body", "eventId"}, `String must match the following pattern: [a-zA-Z0-9\-_.].`, "value_error"}},
		{"eventId too long", `{"eventType":"a","eventId":"` + long + `","payload":{}}`,
			validationItem{[]string{"body", "eventId"}, "String too long", "value_error"}},
		{"empty channels", `{"eventType":"a","channels":[],"payload":{}}`,
			validationItem{[]string{"body", "channels"}, "Channels must have at least 1 and at most 5 items, or be set to null.", "value_error"}},
		{"application uid with id prefix", `{"eventType":"a","payload":{},"application":{"name":"x","uid":"app_1"}}`,
			validationItem{[]string{"body", "application", "uid"}, "Uids are not allowed to have the same prefix as the ID. Prefix with _?", "value_error"}},
		{"application without name", `{"eventType":"a","payload":{},"application":{"uid":"x"}}`,
			validationItem{[]string{"body", "application"}, "missing field `name`", "value_error.jsondecode"}},
		{"not JSON", `{"eventType":`,
			validationItem{[]string{"body"}, "", "value_error.jsondecode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := rawDo(t, http.MethodPost, url, svixfake.DefaultToken, tc.body, nil)
			if r.status != http.StatusUnprocessableEntity {
				t.Fatalf("status = %d %s, want 422", r.status, r.body)
			}
			var body errorBody
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatal(err)
			}
			items := body.validationItems(t)
			found := slices.ContainsFunc(items, func(it validationItem) bool {
				return slices.Equal(it.Loc, tc.want.Loc) && it.Type == tc.want.Type &&
					(tc.want.Msg == "" || it.Msg == tc.want.Msg)
			})
			if !found {
				t.Errorf("detail = %+v, want an item %+v", items, tc.want)
			}
		})
	}
	if n := b.srv.MessageCount(); n != 0 {
		t.Errorf("messages = %d, want 0", n)
	}
}

func TestImplicitAppCreation(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	url := b.srv.URL() + "/api/v1/app/path-uid/msg"
	for _, tc := range []struct {
		name, body, wantType string
	}{
		{"uid missing", `{"eventType":"a","payload":{},"application":{"name":"x"}}`, "application_uid_missing"},
		{"uid differs", `{"eventType":"a","payload":{},"application":{"name":"x","uid":"other"}}`, "application_uid_mismatch"},
	} {
		r := rawDo(t, http.MethodPost, url, svixfake.DefaultToken, tc.body, nil)
		if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), tc.wantType) {
			t.Errorf("%s: %d %s, want 422 %s", tc.name, r.status, r.body, tc.wantType)
		}
	}
	if len(b.srv.Apps()) != 0 {
		t.Errorf("apps = %+v, want none", b.srv.Apps())
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	const secretToken = "testsk_do_not_log_me"
	b := setup(t, svixfake.Config{
		Tokens:          []string{svixfake.DefaultToken},
		ForbiddenTokens: []string{secretToken},
		Logger:          zap.New(core),
	})
	appsURL := b.srv.URL() + "/api/v1/app"

	for _, tc := range []struct {
		name, token string
		status      int
		code        string
	}{
		{"no token", "", http.StatusUnauthorized, "authentication_failed"},
		{"unknown token", "testsk_unknown", http.StatusUnauthorized, "authentication_failed"},
		{"forbidden token", secretToken, http.StatusForbidden, "insufficient access"},
	} {
		r := rawDo(t, http.MethodPost, appsURL, tc.token, `{"name":"x"}`, nil)
		if r.status != tc.status || !strings.Contains(string(r.body), `"code":"`+tc.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, r.status, r.body, tc.status, tc.code)
		}
	}
	// Health needs no token.
	if r := rawDo(t, http.MethodGet, b.srv.URL()+"/api/v1/health", "", "", nil); r.status != http.StatusNoContent {
		t.Errorf("health = %d, want 204", r.status)
	}

	for _, r := range b.srv.Requests() {
		if got := r.Header.Get("Authorization"); got != "" && got != svixfake.RedactedAuthorization {
			t.Errorf("recorded Authorization %q, want it redacted", got)
		}
	}
	if logs.Len() == 0 {
		t.Fatal("no request logged")
	}
	for _, e := range logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, secretToken) {
			t.Errorf("log line contains the token: %s", line)
		}
	}
}

func TestRequestsAreRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)
	eventID := "evt-1"
	out := mustSend(t, b.client, app, "asset.ready", "key-1", &eventID, map[string]any{"z": 1, "a": "é"})

	reqs := b.srv.Requests()
	if len(reqs) != 2 || reqs[0].Seq >= reqs[1].Seq {
		t.Fatalf("requests = %+v, want 2 in order", reqs)
	}
	r := reqs[1]
	want := svixfake.Request{
		Method: http.MethodPost, Path: "/api/v1/app/" + app + "/msg", RawQuery: "with_content=false",
		IdempotencyKey: "key-1", AppID: app, EventType: "asset.ready", EventID: eventID,
		Status: http.StatusAccepted, MsgID: out.Id,
	}
	if r.Method != want.Method || r.Path != want.Path || r.RawQuery != want.RawQuery ||
		r.IdempotencyKey != want.IdempotencyKey || r.AppID != want.AppID || r.EventType != want.EventType ||
		r.EventID != want.EventID || r.Status != want.Status || r.MsgID != want.MsgID || r.Fault != "" || r.Replayed {
		t.Errorf("recorded %+v\nwant %+v", r, want)
	}
	if got := r.Header.Get("Authorization"); got != svixfake.RedactedAuthorization {
		t.Errorf("Authorization = %q, want redacted", got)
	}
	if got := string(r.Body); got != `{"eventId":"evt-1","eventType":"asset.ready","payload":{"a":"é","z":1}}` {
		t.Errorf("body = %s", got)
	}
	if r.Received.IsZero() {
		t.Error("Received not set")
	}
	if got := string(onlyMessage(t, b.srv, app).Payload); got != `{"a":"é","z":1}` {
		t.Errorf("stored payload = %s", got)
	}
	if b.srv.StatusCount(http.StatusAccepted) != 1 || b.srv.RequestCount() != 2 {
		t.Errorf("counts = %v, total %d", b.srv.StatusCounts(), b.srv.RequestCount())
	}
}

func TestMaxRecordedRequests(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		max, wantKept int
	}{{3, 3}, {-1, 0}} {
		b := setup(t, svixfake.Config{MaxRecordedRequests: tc.max})
		for range 5 {
			if err := b.client.Health.Get(testContext(t)); err != nil {
				t.Fatal(err)
			}
		}
		reqs := b.srv.Requests()
		if len(reqs) != tc.wantKept || b.srv.RequestCount() != 5 {
			t.Errorf("max %d: kept %d of %d, want %d of 5", tc.max, len(reqs), b.srv.RequestCount(), tc.wantKept)
		}
		if tc.wantKept > 0 && reqs[len(reqs)-1].Seq != 5 {
			t.Errorf("max %d: last seq %d, want 5 (the oldest are dropped)", tc.max, reqs[len(reqs)-1].Seq)
		}
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	base := b.srv.URL()
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/api/v1/nope", http.StatusNotFound},
		{http.MethodGet, "/elsewhere", http.StatusNotFound},
		{http.MethodPut, "/api/v1/app/x", http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/v1/app/x", http.StatusNotFound},
		{http.MethodGet, "/api/v1/app/x/msg/msg_1", http.StatusNotFound},
		{http.MethodGet, "/api/v1/app/x/endpoint/ep_1/secret", http.StatusNotFound},
		{http.MethodGet, "/api/v1/event-type/none", http.StatusNotFound},
		{http.MethodGet, "/api/v1/health/ping", http.StatusNoContent},
	} {
		if r := rawDo(t, tc.method, base+tc.path, svixfake.DefaultToken, "", nil); r.status != tc.status {
			t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.status)
		}
	}

	// A ServerUrl with a trailing slash makes every path "//api/v1/...".
	slashed := newClient(t, base+"/", svixfake.DefaultToken, nil)
	_, err := slashed.Application.GetOrCreate(testContext(t), models.ApplicationIn{Name: "x", Uid: ptr("x")}, nil)
	svixErr(t, err, http.StatusNotFound)
}

func TestBodyLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{MaxBodyBytes: 64})
	app := createApp(t, b.client)
	_, err := send(t, b.client, app, "asset.ready", "k", nil, map[string]any{"blob": strings.Repeat("x", 64)})
	svixErr(t, err, http.StatusRequestEntityTooLarge)
	if last := lastRequest(t, b.srv); !last.Truncated || len(last.Body) != 64 {
		t.Errorf("recorded body %d bytes, truncated %v; want the first 64", len(last.Body), last.Truncated)
	}
	mustSend(t, b.client, app, "a", "k", nil, map[string]any{})
}

func TestEndpointValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)
	if _, err := b.client.EventType.Create(testContext(t), models.EventTypeIn{Name: "asset.ready", Description: "x"}, nil); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]models.EndpointIn{
		"relative url":     {Url: "/hooks"},
		"ftp url":          {Url: "ftp://example.com/hooks"},
		"unknown type":     {Url: "https://example.com", FilterTypes: []string{"asset.ready", "asset.gone"}},
		"short secret":     {Url: "https://example.com", Secret: ptr("whsec_c2hvcnQ=")},
		"secret no prefix": {Url: "https://example.com", Secret: ptr("c2hvcnQ=")},
		"uid with prefix":  {Url: "https://example.com", Uid: ptr("ep_1")},
	} {
		_, err := b.client.Endpoint.Create(testContext(t), app, in, nil)
		var se *svix.Error
		if !errors.As(err, &se) || se.Status() != http.StatusUnprocessableEntity {
			t.Errorf("%s: err = %v, want 422", name, err)
		}
		if strings.Contains(name, "secret") && se != nil && strings.Contains(string(se.Body()), "c2hvcnQ") {
			t.Errorf("%s: error echoes the secret: %s", name, se.Body())
		}
	}
	// The client drops an empty filterTypes (omitempty); the server refuses it.
	r := rawDo(t, http.MethodPost, b.srv.URL()+"/api/v1/app/"+app+"/endpoint", svixfake.DefaultToken,
		`{"url":"https://example.com","filterTypes":[]}`, nil)
	if r.status != http.StatusUnprocessableEntity {
		t.Errorf("empty filterTypes = %d %s, want 422", r.status, r.body)
	}
	if eps := b.srv.Endpoints(app); len(eps) != 0 {
		t.Errorf("endpoints = %+v, want none", eps)
	}

	secret := "whsec_" + strings.Repeat("QUJD", 8) // 24 bytes
	ep, err := b.client.Endpoint.Create(testContext(t), app, models.EndpointIn{Url: "https://example.com", Uid: ptr("ep-one"), Secret: &secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.client.Endpoint.GetSecret(testContext(t), app, "ep-one")
	if err != nil || got.Key != secret {
		t.Errorf("secret by uid = %v, %v; want the one given", got, err)
	}
	_, err = b.client.Endpoint.Create(testContext(t), app, models.EndpointIn{Url: "https://example.com", Uid: ptr("ep-one")}, nil)
	svixErr(t, err, http.StatusConflict)
	if _, err := b.client.Endpoint.Get(testContext(t), app, ep.Id); err != nil {
		t.Errorf("get endpoint: %v", err)
	}
	_, err = b.client.Endpoint.Create(testContext(t), "no-such-app", models.EndpointIn{Url: "https://example.com"}, nil)
	svixErr(t, err, http.StatusNotFound)
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]svixfake.Config{
		"empty token":          {Tokens: []string{""}},
		"token with space":     {Tokens: []string{"a b"}},
		"token both ways":      {Tokens: []string{"t"}, ForbiddenTokens: []string{"t"}},
		"negative body limit":  {MaxBodyBytes: -1},
		"negative ttl":         {IdempotencyTTL: -time.Second},
		"negative retry delay": {DeliveryRetrySchedule: []time.Duration{-time.Second}},
	} {
		if _, err := svixfake.New(cfg); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
	// Errors never carry the token.
	_, err := svixfake.New(svixfake.Config{Tokens: []string{"secret token"}})
	if err == nil || strings.Contains(err.Error(), "secret token") {
		t.Errorf("err = %v, want an error without the token", err)
	}
}

func TestLifecycle(t *testing.T) {
	t.Parallel()

	t.Run("MountedHandler", func(t *testing.T) {
		t.Parallel()
		srv, err := svixfake.New(svixfake.Config{})
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		defer func() {
			hs.Close()
			if err := srv.Close(); err != nil {
				t.Error(err)
			}
		}()
		if srv.URL() != "" {
			t.Errorf("URL before Start = %q, want empty", srv.URL())
		}
		client := newClient(t, hs.URL, svixfake.DefaultToken, nil)
		app := createApp(t, client)
		mustSend(t, client, app, "asset.ready", "k", nil, map[string]any{})
	})

	t.Run("CloseTwiceAndStartAfterClose", func(t *testing.T) {
		t.Parallel()
		srv, err := svixfake.New(svixfake.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if err := srv.Start("127.0.0.1:0"); err == nil {
			t.Error("second Start succeeded")
		}
		u := srv.URL()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if err := srv.Start("127.0.0.1:0"); err == nil {
			t.Error("Start after Close succeeded")
		}
		client := newClient(t, u, svixfake.DefaultToken, nil)
		var ue *url.Error
		if err := client.Health.Get(testContext(t)); !errors.As(err, &ue) {
			t.Errorf("health after Close = %v, want a connection error", err)
		}
	})

	t.Run("CloseCutsLatencyShort", func(t *testing.T) {
		t.Parallel()
		srv, err := svixfake.New(svixfake.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		client := newClient(t, srv.URL(), svixfake.DefaultToken, nil)
		app := createApp(t, client)
		srv.SetLatency(time.Hour, 0)
		errc := make(chan error, 1)
		go func() {
			_, err := send(t, client, app, "asset.ready", "k", nil, map[string]any{})
			errc <- err
		}()
		if err := srv.WaitForMessages(testContext(t), 1); err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err == nil {
			t.Error("create answered despite Close during the latency")
		}
	})

	t.Run("WaitForHonoursContext", func(t *testing.T) {
		t.Parallel()
		b := setup(t, svixfake.Config{})
		ctx, cancel := context.WithCancel(testContext(t))
		cancel()
		err := b.srv.WaitFor(ctx, func(*svixfake.Server) bool { return false })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestMessageRetention(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	b := setupWithClock(t, svixfake.Config{
		MessageRetention: time.Minute,
		OnMessage: func(m svixfake.Message) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, m.EventID)
		},
	})
	app := createApp(t, b.client)
	old, fresh := "evt-old", "evt-fresh"
	first := mustSend(t, b.client, app, "asset.ready", "", &old, map[string]any{"n": 1})
	b.clock.Advance(30 * time.Second)
	mustSend(t, b.client, app, "asset.ready", "", &fresh, map[string]any{"n": 2})
	if _, err := send(t, b.client, app, "asset.ready", "", &old, map[string]any{"n": 1}); err == nil {
		t.Fatal("repeated eventId within the retention was accepted, want 409")
	} else {
		svixErr(t, err, http.StatusConflict)
	}

	// A message accepted after the first is older than the retention
	// makes the fake forget it: its id, its eventId and the lists.
	b.clock.Advance(45 * time.Second)
	later := "evt-later"
	mustSend(t, b.client, app, "asset.ready", "", &later, map[string]any{"n": 3})
	if _, ok := b.srv.MessageByEventID(app, old); ok {
		t.Error("the message past the retention is still found by its eventId")
	}
	if _, err := b.client.Message.Get(testContext(t), app, first.Id, nil); err == nil {
		t.Error("the message past the retention is still found by its id")
	}
	var kept []string
	for _, m := range b.srv.AllMessages() {
		kept = append(kept, m.EventID)
	}
	if want := []string{fresh, later}; !slices.Equal(kept, want) {
		t.Errorf("AllMessages = %v, want %v", kept, want)
	}
	if n := len(b.srv.Messages(app)); n != 2 {
		t.Errorf("Messages(app) holds %d, want 2", n)
	}
	if n := b.srv.MessageCount(); n != 3 {
		t.Errorf("MessageCount = %d, want 3 (forgotten messages still count)", n)
	}
	// Forgotten, the eventId makes a new message, as hosted Svix does
	// once it no longer remembers it.
	mustSend(t, b.client, app, "asset.ready", "", &old, map[string]any{"n": 1})

	mu.Lock()
	defer mu.Unlock()
	if want := []string{old, fresh, later, old}; !slices.Equal(seen, want) {
		t.Errorf("OnMessage saw %v, want %v (each accepted message once, not the 409)", seen, want)
	}
}
