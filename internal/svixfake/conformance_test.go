package svixfake_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// target is one Svix API the conformance suite runs against.
type target struct {
	client *svix.Svix
	url    string // base URL, no trailing slash
	token  string
	// badToken is a token the target refuses with 401.
	badToken string
	// fake is set when the target is the fake, for extra checks.
	fake *svixfake.Server
}

func TestConformance(t *testing.T) {
	t.Parallel()

	t.Run("fake", func(t *testing.T) {
		t.Parallel()
		runConformance(t, func(t *testing.T) target {
			srv := svixfake.NewStarted(t, svixfake.Config{})
			return target{
				client:   newClient(t, srv.URL(), svixfake.DefaultToken, nil),
				url:      srv.URL(),
				token:    svixfake.DefaultToken,
				badToken: "testsk_not_a_token",
				fake:     srv,
			}
		})
	})

	t.Run("svix", func(t *testing.T) {
		t.Parallel()
		base, token := os.Getenv("SVIX_CONFORMANCE_URL"), os.Getenv("SVIX_CONFORMANCE_TOKEN")
		if base == "" || token == "" {
			t.Skip("set SVIX_CONFORMANCE_URL and SVIX_CONFORMANCE_TOKEN to run the suite against a real Svix")
		}
		base = strings.TrimRight(base, "/") // a trailing slash breaks every call
		runConformance(t, func(t *testing.T) target {
			return target{
				client:   newClient(t, base, token, nil),
				url:      base,
				token:    token,
				badToken: "testsk_svixfake_conformance_invalid",
			}
		})
	})
}

// runConformance pins the facts the relay relies on (see
// shared/notes/svix-go-client.md). newTarget is called once per subtest;
// against a real Svix every name is unique, so reruns do not collide.
func runConformance(t *testing.T, newTarget func(t *testing.T) target) {
	t.Run("MessageCreateAccepted", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		key := uniqueID("key-")
		out := mustSend(t, tg.client, app, "asset.ready", key, nil, map[string]any{"asset_id": "a1"})
		if !strings.HasPrefix(out.Id, "msg_") || len(out.Id) != len("msg_")+27 {
			t.Errorf("id = %q, want msg_ + 27 characters", out.Id)
		}
		if out.EventType != "asset.ready" || out.Timestamp.IsZero() {
			t.Errorf("out = %+v, want eventType asset.ready and a timestamp", out)
		}
		if tg.fake != nil {
			msgs := tg.fake.Messages(app)
			if len(msgs) != 1 || msgs[0].ID != out.Id || msgs[0].IdempotencyKey != key {
				t.Errorf("fake messages = %+v, want the one accepted", msgs)
			}
		}
	})

	t.Run("IdempotencyKeyReplaysFirstAnswer", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		key := uniqueID("key-")
		first := mustSend(t, tg.client, app, "asset.ready", key, nil, map[string]any{"n": 1})
		// The body is not compared: a different payload gets the first answer.
		second := mustSend(t, tg.client, app, "asset.ready", key, nil, map[string]any{"n": 2})
		if second.Id != first.Id || !second.Timestamp.Equal(first.Timestamp) {
			t.Errorf("replay = %s at %s, want %s at %s", second.Id, second.Timestamp, first.Id, first.Timestamp)
		}
		list, err := tg.client.Message.List(testContext(t), app, nil)
		if err != nil {
			t.Fatalf("list messages: %v", err)
		}
		if len(list.Data) != 1 {
			t.Errorf("messages in app = %d, want 1", len(list.Data))
		}
	})

	t.Run("RepeatedEventIDConflicts", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		eventID := uniqueID("evt-")
		mustSend(t, tg.client, app, "asset.ready", uniqueID("key-"), &eventID, map[string]any{"n": 1})
		_, err := send(t, tg.client, app, "asset.ready", uniqueID("key-"), &eventID, map[string]any{"n": 1})
		if body := svixErr(t, err, http.StatusConflict); body.Code != "conflict" {
			t.Errorf("code = %q, want conflict", body.Code)
		}
	})

	t.Run("MissingAppIs404UnlessCreatedAlongside", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		uid := uniqueID("app-missing-")
		_, err := send(t, tg.client, uid, "asset.ready", uniqueID("key-"), nil, map[string]any{})
		if body := svixErr(t, err, http.StatusNotFound); body.Code != "not_found" {
			t.Errorf("code = %q, want not_found", body.Code)
		}

		out, err := tg.client.Message.Create(testContext(t), uid, models.MessageIn{
			EventType:   "asset.ready",
			Payload:     map[string]any{},
			Application: &models.ApplicationIn{Name: "Created alongside", Uid: &uid},
		}, &svix.MessageCreateOptions{IdempotencyKey: ptr(uniqueID("key-"))})
		if err != nil {
			t.Fatalf("create with application: %v", err)
		}
		app, err := tg.client.Application.Get(testContext(t), uid)
		if err != nil {
			t.Fatalf("get implicitly created app: %v", err)
		}
		if app.Name != "Created alongside" || app.Uid == nil || *app.Uid != uid {
			t.Errorf("app = %+v, want name and uid from the message", app)
		}
		if !strings.HasPrefix(out.Id, "msg_") {
			t.Errorf("id = %q", out.Id)
		}

		other := uniqueID("app-other-")
		_, err = tg.client.Message.Create(testContext(t), uniqueID("app-path-"), models.MessageIn{
			EventType:   "asset.ready",
			Payload:     map[string]any{},
			Application: &models.ApplicationIn{Name: "Mismatch", Uid: &other},
		}, nil)
		svixErr(t, err, http.StatusUnprocessableEntity)
	})

	t.Run("NilPayloadIs422", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		_, err := send(t, tg.client, app, "asset.ready", uniqueID("key-"), nil, nil)
		body := svixErr(t, err, http.StatusUnprocessableEntity)
		if items := body.validationItems(t); len(items) == 0 {
			t.Error("422 without detail items")
		}
	})

	t.Run("InvalidFieldsAre422", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		for name, in := range map[string]models.MessageIn{
			"event type with a space": {EventType: "asset ready", Payload: map[string]any{}},
			"empty event type":        {EventType: "", Payload: map[string]any{}},
			"event type too long":     {EventType: strings.Repeat("a", 257), Payload: map[string]any{}},
			"eventId with msg_":       {EventType: "asset.ready", EventId: ptr("msg_123"), Payload: map[string]any{}},
			"eventId with slash":      {EventType: "asset.ready", EventId: ptr("a/b"), Payload: map[string]any{}},
		} {
			_, err := tg.client.Message.Create(testContext(t), app, in, nil)
			var se *svix.Error
			if !errors.As(err, &se) || se.Status() != http.StatusUnprocessableEntity {
				t.Errorf("%s: err = %v, want 422", name, err)
			}
		}
	})

	t.Run("BodyOver1MiBIs413", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		big := strings.Repeat("x", 1<<20+1)
		_, err := send(t, tg.client, app, "asset.ready", uniqueID("key-"), nil, map[string]any{"blob": big})
		if body := svixErr(t, err, http.StatusRequestEntityTooLarge); body.Code != "payload_too_large" {
			t.Errorf("code = %q, want payload_too_large", body.Code)
		}
	})

	t.Run("BadTokenIs401", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		bad := newClient(t, tg.url, tg.badToken, nil)
		_, err := bad.Application.GetOrCreate(testContext(t), models.ApplicationIn{Name: "x", Uid: ptr(uniqueID("app-"))}, nil)
		if body := svixErr(t, err, http.StatusUnauthorized); body.Code != "authentication_failed" {
			t.Errorf("code = %q, want authentication_failed", body.Code)
		}
	})

	t.Run("GetByIDAndEventID", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		eventID := uniqueID("evt-")
		out := mustSend(t, tg.client, app, "asset.ready", uniqueID("key-"), &eventID, map[string]any{"k": "v"})
		for _, id := range []string{out.Id, eventID} {
			got, err := tg.client.Message.Get(testContext(t), app, id, nil)
			if err != nil {
				t.Fatalf("get %s: %v", id, err)
			}
			if got.Id != out.Id || got.EventId == nil || *got.EventId != eventID || got.Payload["k"] != "v" {
				t.Errorf("get %s = %+v", id, got)
			}
		}
		_, err := tg.client.Message.Get(testContext(t), app, uniqueID("evt-none-"), nil)
		svixErr(t, err, http.StatusNotFound)
	})

	t.Run("ApplicationGetOrCreateIsIdempotent", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		uid := uniqueID("app-")
		in := models.ApplicationIn{Name: "Relay test", Uid: &uid}
		first, err := tg.client.Application.GetOrCreate(testContext(t), in, nil)
		if err != nil {
			t.Fatalf("first GetOrCreate: %v", err)
		}
		second, err := tg.client.Application.GetOrCreate(testContext(t), in, nil)
		if err != nil {
			t.Fatalf("second GetOrCreate: %v", err)
		}
		if first.Id != second.Id || !strings.HasPrefix(first.Id, "app_") {
			t.Errorf("ids = %s, %s; want the same app_ id", first.Id, second.Id)
		}
		_, err = tg.client.Application.Create(testContext(t), in, nil)
		svixErr(t, err, http.StatusConflict)
	})

	t.Run("EventTypeCreateThenExists", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		name := uniqueID("relay.conformance.")
		in := models.EventTypeIn{Name: name, Description: "conformance"}
		out, err := tg.client.EventType.Create(testContext(t), in, nil)
		if err != nil {
			t.Fatalf("create event type: %v", err)
		}
		if out.Name != name {
			t.Errorf("name = %q, want %q", out.Name, name)
		}
		_, err = tg.client.EventType.Create(testContext(t), in, nil)
		if body := svixErr(t, err, http.StatusConflict); body.Code != "event_type_exists" {
			t.Errorf("code = %q, want event_type_exists", body.Code)
		}
		got, err := tg.client.EventType.Get(testContext(t), name)
		if err != nil || got.Name != name {
			t.Errorf("get event type = %v, %v", got, err)
		}
	})

	t.Run("EndpointLifecycle", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		evType := uniqueID("relay.conformance.")
		if _, err := tg.client.EventType.Create(testContext(t), models.EventTypeIn{Name: evType, Description: "x"}, nil); err != nil {
			t.Fatalf("create event type: %v", err)
		}
		ep, err := tg.client.Endpoint.Create(testContext(t), app, models.EndpointIn{
			Url:         "https://example.com/webhooks",
			FilterTypes: []string{evType},
		}, nil)
		if err != nil {
			t.Fatalf("create endpoint: %v", err)
		}
		if !strings.HasPrefix(ep.Id, "ep_") || len(ep.FilterTypes) != 1 || ep.FilterTypes[0] != evType {
			t.Errorf("endpoint = %+v", ep)
		}
		secret, err := tg.client.Endpoint.GetSecret(testContext(t), app, ep.Id)
		if err != nil {
			t.Fatalf("get secret: %v", err)
		}
		if _, err := svix.NewWebhook(secret.Key); err != nil || !strings.HasPrefix(secret.Key, "whsec_") {
			t.Errorf("secret %q unusable: %v", secret.Key, err)
		}
		list, err := tg.client.Endpoint.List(testContext(t), app, nil)
		if err != nil || len(list.Data) != 1 || list.Data[0].Id != ep.Id {
			t.Fatalf("list = %+v, %v; want the endpoint", list, err)
		}
		if err := tg.client.Endpoint.Delete(testContext(t), app, ep.Id); err != nil {
			t.Fatalf("delete endpoint: %v", err)
		}
		list, err = tg.client.Endpoint.List(testContext(t), app, nil)
		if err != nil || len(list.Data) != 0 {
			t.Errorf("list after delete = %+v, %v; want empty", list, err)
		}
		_, err = tg.client.Endpoint.Create(testContext(t), app, models.EndpointIn{
			Url:         "https://example.com/webhooks",
			FilterTypes: []string{uniqueID("relay.unregistered.")},
		}, nil)
		svixErr(t, err, http.StatusUnprocessableEntity)
	})

	t.Run("EndpointListPages", func(t *testing.T) {
		t.Parallel()
		conformEndpointListPages(t, newTarget(t))
	})

	t.Run("EndpointSecretRotation", func(t *testing.T) {
		t.Parallel()
		conformEndpointSecretRotation(t, newTarget(t))
	})

	t.Run("BigIntegersSurviveExactly", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		out := mustSend(t, tg.client, app, "asset.ready", uniqueID("key-"), nil,
			map[string]any{"n": json.Number("9007199254740993")})

		// The client decodes payloads into float64; read the raw answer.
		raw := rawGet(t, tg, "/api/v1/app/"+app+"/msg/"+out.Id)
		var msg struct {
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(raw, &msg); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
		if got := compact(t, msg.Payload); got != `{"n":9007199254740993}` {
			t.Errorf("payload = %s, want {\"n\":9007199254740993}", got)
		}
		if tg.fake != nil {
			if got := string(tg.fake.Messages(app)[0].Payload); got != `{"n":9007199254740993}` {
				t.Errorf("stored payload = %s", got)
			}
		}
	})

	t.Run("NonASCIITextSurvives", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		app := createApp(t, tg.client)
		text := "Vidéo prête — 動画の準備ができました 🎬 <b>&</b>"
		out := mustSend(t, tg.client, app, "asset.ready", uniqueID("key-"), nil, map[string]any{"title": text})
		got, err := tg.client.Message.Get(testContext(t), app, out.Id, nil)
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if got.Payload["title"] != text {
			t.Errorf("title = %q, want %q", got.Payload["title"], text)
		}
	})

	t.Run("Health", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t)
		if err := tg.client.Health.Get(testContext(t)); err != nil {
			t.Errorf("health: %v", err)
		}
	})
}

// rawGet fetches path from the target with its token and returns the body
// of a 200.
func rawGet(t *testing.T, tg target, path string) []byte {
	t.Helper()
	r := rawDo(t, http.MethodGet, tg.url+path, tg.token, "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, r.status, r.body)
	}
	return r.body
}

func compact(t *testing.T, raw []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatalf("compact %s: %v", raw, err)
	}
	return buf.String()
}
