package svixfake_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/mediaplatform/relay/internal/svixfake"
)

func TestLatency(t *testing.T) {
	t.Parallel()

	t.Run("ClientTimeoutStillAccepted", func(t *testing.T) {
		t.Parallel()
		b := setup(t, svixfake.Config{})
		app := createApp(t, b.client)
		b.srv.SetLatency(time.Hour, 0)

		eventID := "evt-timeout"
		ctx, cancel := context.WithTimeout(testContext(t), 50*time.Millisecond)
		defer cancel()
		key := "key-timeout"
		_, err := b.client.Message.Create(ctx, app, msgIn("asset.ready", &eventID), &svix.MessageCreateOptions{IdempotencyKey: &key})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
		// The message was stored before the delay: the ambiguous case.
		if err := b.srv.WaitFor(testContext(t), func(s *svixfake.Server) bool {
			_, ok := s.MessageByEventID(app, eventID)
			return ok
		}); err != nil {
			t.Fatal(err)
		}

		// A retry with the same key gets the first answer, once the delay
		// is gone.
		b.srv.SetLatency(0, 0)
		out, err := b.client.Message.Create(testContext(t), app, msgIn("asset.ready", &eventID), &svix.MessageCreateOptions{IdempotencyKey: &key})
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		stored, _ := b.srv.MessageByEventID(app, eventID)
		if out.Id != stored.ID || b.srv.MessageCount() != 1 {
			t.Errorf("retry id %s, stored %s, count %d; want one message", out.Id, stored.ID, b.srv.MessageCount())
		}
		// The timed-out request is recorded when the server notices the
		// client left, possibly after the retry: look for the retry itself.
		replayed := slices.ContainsFunc(b.srv.Requests(), func(r svixfake.Request) bool {
			return r.Replayed && r.MsgID == out.Id && r.Status == http.StatusAccepted
		})
		if !replayed {
			t.Errorf("retry not answered from the idempotency store: %+v", b.srv.Requests())
		}
	})

	t.Run("WaitsAtLeastTheLatency", func(t *testing.T) {
		t.Parallel()
		b := setup(t, svixfake.Config{})
		app := createApp(t, b.client)
		const latency = 100 * time.Millisecond
		b.srv.SetLatency(latency, 10*time.Millisecond)
		start := time.Now()
		mustSend(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
		if elapsed := time.Since(start); elapsed < latency {
			t.Errorf("answered after %s, want at least %s", elapsed, latency)
		}
	})
}

func TestSetFailureRate(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)

	b.srv.SetFailureRate(1, http.StatusBadGateway)
	_, err := send(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
	if body := svixErr(t, err, http.StatusBadGateway); body.Code != "server_error" {
		t.Errorf("code = %q, want server_error", body.Code)
	}
	if n := b.srv.MessageCount(); n != 0 {
		t.Errorf("messages = %d, want 0", n)
	}
	if last := lastRequest(t, b.srv); last.Fault != svixfake.FaultFailure || last.Status != http.StatusBadGateway {
		t.Errorf("recorded %+v, want a failure fault", last)
	}
	// Health is exempt.
	if err := b.client.Health.Get(testContext(t)); err != nil {
		t.Errorf("health during failures: %v", err)
	}

	b.srv.SetFailureRate(0, 0)
	mustSend(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
}

func TestSetRateLimit(t *testing.T) {
	t.Parallel()
	b := setupWithClock(t, svixfake.Config{})
	app := createApp(t, b.client)

	b.srv.SetRateLimit(2)
	mustSend(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
	mustSend(t, b.client, app, "asset.ready", "k2", nil, map[string]any{})
	_, err := send(t, b.client, app, "asset.ready", "k3", nil, map[string]any{})
	if body := svixErr(t, err, http.StatusTooManyRequests); body.Code != "rate_limited" {
		t.Errorf("code = %q, want rate_limited", body.Code)
	}
	if ra := b.hdrs.Last().Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After = %q, want 1", ra)
	}
	// Only message creates are limited.
	if _, err := b.client.Application.Get(testContext(t), app); err != nil {
		t.Errorf("get app while limited: %v", err)
	}

	b.clock.Advance(500 * time.Millisecond) // one token back
	mustSend(t, b.client, app, "asset.ready", "k3", nil, map[string]any{})
	if n := b.srv.StatusCount(http.StatusTooManyRequests); n != 1 {
		t.Errorf("429 count = %d, want 1", n)
	}

	b.srv.SetRateLimit(0)
	for i := range 5 {
		mustSend(t, b.client, app, "asset.ready", "k-unlimited-"+string(rune('a'+i)), nil, map[string]any{})
	}
}

func TestThrottle(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)

	b.srv.Throttle(2, 2500*time.Millisecond)
	for range 2 {
		_, err := send(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
		svixErr(t, err, http.StatusTooManyRequests)
		if ra := b.hdrs.Last().Get("Retry-After"); ra != "3" {
			t.Errorf("Retry-After = %q, want 3 (2.5 s rounded up)", ra)
		}
	}
	mustSend(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
	if n := b.srv.MessageCount(); n != 1 {
		t.Errorf("messages = %d, want 1", n)
	}
}

func TestSetDropConnections(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)

	b.srv.SetDropConnections(1)
	_, err := send(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v (%T), want *url.Error", err, err)
	}
	if n := b.srv.MessageCount(); n != 0 {
		t.Errorf("messages = %d, want 0", n)
	}
	if n := b.srv.StatusCount(0); n < 1 {
		t.Errorf("dropped = %d, want at least 1", n)
	}
	for _, r := range b.srv.Requests()[1:] {
		if !r.Dropped || r.Fault != svixfake.FaultDrop {
			t.Errorf("recorded %+v, want dropped", r)
		}
	}

	b.srv.SetDropConnections(0)
	mustSend(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
}

func TestOutage(t *testing.T) {
	t.Parallel()

	t.Run("Answered503UntilTheEnd", func(t *testing.T) {
		t.Parallel()
		b := setupWithClock(t, svixfake.Config{})
		app := createApp(t, b.client)

		b.srv.Outage(b.clock.Now().Add(time.Minute), false)
		_, err := send(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
		svixErr(t, err, http.StatusServiceUnavailable)
		svixErr(t, b.client.Health.Get(testContext(t)), http.StatusServiceUnavailable)

		b.clock.Advance(time.Minute)
		mustSend(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
		if err := b.client.Health.Get(testContext(t)); err != nil {
			t.Errorf("health after outage: %v", err)
		}
	})

	t.Run("DroppingConnections", func(t *testing.T) {
		t.Parallel()
		b := setup(t, svixfake.Config{})
		app := createApp(t, b.client)

		b.srv.Outage(time.Now().Add(time.Hour), true)
		_, err := send(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
		var ue *url.Error
		if !errors.As(err, &ue) {
			t.Fatalf("err = %v, want *url.Error", err)
		}
		b.srv.Outage(time.Time{}, false)
		mustSend(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
	})
}

func TestFailApp(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	bad := createApp(t, b.client)
	good := createApp(t, b.client)

	b.srv.FailApp(bad, http.StatusGone, "app_disabled", "Application is disabled")
	_, err := send(t, b.client, bad, "asset.ready", "k1", nil, map[string]any{})
	if body := svixErr(t, err, http.StatusGone); body.Code != "app_disabled" {
		t.Errorf("code = %q, want app_disabled", body.Code)
	}
	mustSend(t, b.client, good, "asset.ready", "k2", nil, map[string]any{})

	// A rule on the uid also matches requests made with the app id.
	goodApp, err := b.client.Application.Get(testContext(t), good)
	if err != nil {
		t.Fatalf("get app: %v", err)
	}
	b.srv.FailApp(good, http.StatusForbidden, "insufficient access", "No access to this app")
	_, err = send(t, b.client, goodApp.Id, "asset.ready", "k3", nil, map[string]any{})
	svixErr(t, err, http.StatusForbidden)
	if last := lastRequest(t, b.srv); last.Fault != svixfake.FaultApp {
		t.Errorf("fault = %q, want %q", last.Fault, svixfake.FaultApp)
	}

	// Status 0 removes a rule.
	b.srv.FailApp(good, 0, "", "")
	b.srv.FailApp(bad, 0, "", "")
	mustSend(t, b.client, bad, "asset.ready", "k4", nil, map[string]any{})
	mustSend(t, b.client, goodApp.Id, "asset.ready", "k5", nil, map[string]any{})
}

func TestSetInterceptor(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)

	// Answer the first attempt of each asset.pending_payment message 503.
	var seen sync.Map
	b.srv.SetInterceptor(func(r *svixfake.Request) (svixfake.Reply, bool) {
		if r.Method != http.MethodPost || r.EventType != "asset.pending_payment" {
			return svixfake.Reply{}, false
		}
		if _, retried := seen.LoadOrStore(r.EventID, true); retried {
			return svixfake.Reply{}, false
		}
		return svixfake.Reply{Status: http.StatusServiceUnavailable, Header: http.Header{"Retry-After": {"7"}}}, true
	})

	pendingID, readyID := "evt-pending", "evt-ready"
	_, err := send(t, b.client, app, "asset.pending_payment", "k-pending", &pendingID, map[string]any{})
	if body := svixErr(t, err, http.StatusServiceUnavailable); body.Code != "server_error" {
		t.Errorf("code = %q, want server_error", body.Code)
	}
	if ra := b.hdrs.Last().Get("Retry-After"); ra != "7" {
		t.Errorf("Retry-After = %q, want 7", ra)
	}
	mustSend(t, b.client, app, "asset.ready", "k-ready", &readyID, map[string]any{})
	mustSend(t, b.client, app, "asset.pending_payment", "k-pending", &pendingID, map[string]any{})

	var faulted []string
	for _, r := range b.srv.Requests() {
		if r.Fault == svixfake.FaultInterceptor {
			faulted = append(faulted, r.EventID)
		}
	}
	if len(faulted) != 1 || faulted[0] != pendingID {
		t.Errorf("intercepted = %v, want [%s]", faulted, pendingID)
	}
	if n := b.srv.MessageCount(); n != 2 {
		t.Errorf("messages = %d, want 2", n)
	}

	b.srv.SetInterceptor(nil)
}

func TestResetFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)
	b.srv.SetFailureRate(1, 0)
	b.srv.SetDropConnections(1)
	b.srv.Throttle(10, time.Second)
	b.srv.Outage(time.Now().Add(time.Hour), false)
	b.srv.ResetFaults()
	mustSend(t, b.client, app, "asset.ready", "k1", nil, map[string]any{})
}
