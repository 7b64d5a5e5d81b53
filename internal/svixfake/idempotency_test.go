package svixfake_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/internal/svixfake"
)

func TestIdempotency(t *testing.T) {
	t.Parallel()

	t.Run("ConcurrentSameKeyCreatesOneMessage", func(t *testing.T) {
		t.Parallel()
		b := setup(t, svixfake.Config{})
		app := createApp(t, b.client)

		const n = 32
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				out, err := send(t, b.client, app, "asset.ready", "same-key", nil, map[string]any{"i": i})
				if err == nil {
					ids[i] = out.Id
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("request %d: %v", i, errs[i])
			}
			if ids[i] != ids[0] {
				t.Errorf("request %d got %s, request 0 got %s", i, ids[i], ids[0])
			}
		}
		if c := b.srv.MessageCount(); c != 1 {
			t.Errorf("messages = %d, want 1", c)
		}
	})

	t.Run("Non2xxAnswersAreNotStored", func(t *testing.T) {
		t.Parallel()
		b := setup(t, svixfake.Config{})
		app := createApp(t, b.client)
		_, err := send(t, b.client, app, "asset.ready", "k1", nil, nil) // null payload
		svixErr(t, err, http.StatusUnprocessableEntity)
		out := mustSend(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
		if !strings.HasPrefix(out.Id, "msg_") {
			t.Errorf("id = %q", out.Id)
		}
	})

	t.Run("ReplayIsByteIdentical", func(t *testing.T) {
		t.Parallel()
		b := setup(t, svixfake.Config{})
		app := createApp(t, b.client)
		post := func(body string) (int, []byte) {
			r := rawDo(t, http.MethodPost, b.srv.URL()+"/api/v1/app/"+app+"/msg?with_content=true",
				svixfake.DefaultToken, body, http.Header{"Idempotency-Key": {"k-bytes"}})
			return r.status, r.body
		}
		s1, b1 := post(`{"eventType":"asset.ready","payload":{"a":1}}`)
		s2, b2 := post(`{"eventType":"asset.changed","payload":{"b":2}}`)
		if s1 != http.StatusAccepted || s2 != s1 || !bytes.Equal(b1, b2) {
			t.Errorf("first %d %s, replay %d %s; want identical 202s", s1, b1, s2, b2)
		}
	})

	t.Run("ScopedByTokenAndURL", func(t *testing.T) {
		t.Parallel()
		b := setup(t, svixfake.Config{Tokens: []string{svixfake.DefaultToken, "testsk_other"}})
		other := newClient(t, b.srv.URL(), "testsk_other", nil)
		app1, app2 := createApp(t, b.client), createApp(t, b.client)

		m1 := mustSend(t, b.client, app1, "asset.ready", "k", nil, map[string]any{})
		m2 := mustSend(t, other, app1, "asset.ready", "k", nil, map[string]any{})
		m3 := mustSend(t, b.client, app2, "asset.ready", "k", nil, map[string]any{})
		if m1.Id == m2.Id || m1.Id == m3.Id || m2.Id == m3.Id {
			t.Errorf("ids %s %s %s; want three messages", m1.Id, m2.Id, m3.Id)
		}
	})

	t.Run("ExpiresAfterTTL", func(t *testing.T) {
		t.Parallel()
		b := setupWithClock(t, svixfake.Config{})
		app := createApp(t, b.client)
		first := mustSend(t, b.client, app, "asset.ready", "k", nil, map[string]any{})

		b.clock.Advance(svixfake.DefaultIdempotencyTTL - time.Second)
		if again := mustSend(t, b.client, app, "asset.ready", "k", nil, map[string]any{}); again.Id != first.Id {
			t.Errorf("within TTL: %s, want replay of %s", again.Id, first.Id)
		}
		b.clock.Advance(time.Second)
		if after := mustSend(t, b.client, app, "asset.ready", "k", nil, map[string]any{}); after.Id == first.Id {
			t.Errorf("after TTL: replayed %s, want a new message", after.Id)
		}
	})

	t.Run("EventIDOutlivesTheKey", func(t *testing.T) {
		t.Parallel()
		b := setupWithClock(t, svixfake.Config{IdempotencyTTL: time.Minute})
		app := createApp(t, b.client)
		eventID := "outbox-42"
		mustSend(t, b.client, app, "asset.ready", "k", &eventID, map[string]any{})
		b.clock.Advance(time.Hour)
		_, err := send(t, b.client, app, "asset.ready", "k", &eventID, map[string]any{})
		if body := svixErr(t, err, http.StatusConflict); body.Code != "conflict" {
			t.Errorf("code = %q, want conflict", body.Code)
		}
	})

	t.Run("AppliesToOtherPOSTs", func(t *testing.T) {
		t.Parallel()
		b := setup(t, svixfake.Config{})
		key := "app-key"
		opts := &svix.ApplicationCreateOptions{IdempotencyKey: &key}
		a1, err := b.client.Application.Create(testContext(t), models.ApplicationIn{Name: "one"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		a2, err := b.client.Application.Create(testContext(t), models.ApplicationIn{Name: "two"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if a1.Id != a2.Id || len(b.srv.Apps()) != 1 {
			t.Errorf("apps %s, %s (%d stored); want one replayed", a1.Id, a2.Id, len(b.srv.Apps()))
		}
	})
}
