package svixfake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// receiver is a customer endpoint that verifies signatures like a Svix
// customer would.
type receiver struct {
	srv *httptest.Server

	mu        sync.Mutex
	secret    string
	failFirst int // answer the first failFirst deliveries 500
	got       []received
}

type received struct {
	header    http.Header
	body      []byte
	verifyErr error
}

func newReceiver(t *testing.T, failFirst int) *receiver {
	t.Helper()
	rc := &receiver{failFirst: failFirst}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serveHTTP))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var verifyErr error
	wh, err := svix.NewWebhook(rc.secret)
	if err == nil {
		verifyErr = wh.Verify(body, r.Header)
	} else {
		verifyErr = err
	}
	rc.got = append(rc.got, received{header: r.Header.Clone(), body: body, verifyErr: verifyErr})
	switch {
	case verifyErr != nil:
		w.WriteHeader(http.StatusBadRequest)
	case len(rc.got) <= rc.failFirst:
		w.WriteHeader(http.StatusInternalServerError)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (rc *receiver) setSecret(s string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secret = s
}

func (rc *receiver) received() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// addEndpoint registers rc on app and hands it the generated secret.
func addEndpoint(t *testing.T, client *svix.Svix, app string, rc *receiver, in models.EndpointIn) string {
	t.Helper()
	in.Url = rc.srv.URL + "/webhooks"
	ep, err := client.Endpoint.Create(testContext(t), app, in, nil)
	if err != nil {
		t.Fatalf("create endpoint: %v", err)
	}
	secret, err := client.Endpoint.GetSecret(testContext(t), app, ep.Id)
	if err != nil {
		t.Fatalf("get secret: %v", err)
	}
	rc.setSecret(secret.Key)
	return ep.Id
}

func waitAttempts(t *testing.T, srv *svixfake.Server, n int) []svixfake.Attempt {
	t.Helper()
	if err := srv.WaitFor(testContext(t), func(s *svixfake.Server) bool { return len(s.Attempts()) >= n }); err != nil {
		t.Fatalf("waiting for %d attempts (have %+v): %v", n, srv.Attempts(), err)
	}
	return srv.Attempts()
}

func TestDevModeDelivery(t *testing.T) {
	t.Parallel()
	filtered, all, channel := newReceiver(t, 0), newReceiver(t, 0), newReceiver(t, 0)
	b := setup(t, svixfake.Config{DevMode: true, DeliveryRetrySchedule: []time.Duration{10 * time.Millisecond}})
	app := createApp(t, b.client)
	if _, err := b.client.EventType.Create(testContext(t), models.EventTypeIn{Name: "asset.ready", Description: "x"}, nil); err != nil {
		t.Fatal(err)
	}
	filteredID := addEndpoint(t, b.client, app, filtered, models.EndpointIn{FilterTypes: []string{"asset.ready"}})
	addEndpoint(t, b.client, app, all, models.EndpointIn{})
	addEndpoint(t, b.client, app, channel, models.EndpointIn{Channels: []string{"studio-7"}})

	ready := mustSend(t, b.client, app, "asset.ready", "k1", nil,
		map[string]any{"n": json.Number("9007199254740993"), "title": "prête 🎬"})
	other := mustSend(t, b.client, app, "asset.deleted", "k2", nil, map[string]any{"id": 1})

	// ready goes to filtered and all; other only to all; channel gets
	// neither (no channels on the messages).
	attempts := waitAttempts(t, b.srv, 3)
	if err := b.srv.Close(); err != nil { // waits for every delivery
		t.Fatal(err)
	}
	if got := b.srv.Attempts(); len(got) != 3 {
		t.Fatalf("attempts = %+v, want 3", got)
	}
	for _, a := range attempts {
		if !a.Success() || a.Attempt != 1 {
			t.Errorf("attempt %+v, want a first-attempt success", a)
		}
	}
	if got := b.srv.AttemptsFor(ready.Id); len(got) != 2 || !slices.ContainsFunc(got, func(a svixfake.Attempt) bool { return a.EndpointID == filteredID }) {
		t.Errorf("attempts for %s = %+v, want filtered and all", ready.Id, got)
	}

	stored := map[string][]byte{}
	for _, m := range b.srv.AllMessages() {
		stored[m.ID] = m.Payload
	}
	for name, tc := range map[string]struct {
		rc   *receiver
		want []string
	}{
		"filtered": {filtered, []string{ready.Id}},
		"all":      {all, []string{ready.Id, other.Id}},
		"channel":  {channel, nil},
	} {
		var ids []string
		for _, d := range tc.rc.received() {
			id := d.header.Get("svix-id")
			ids = append(ids, id)
			if d.verifyErr != nil {
				t.Errorf("%s: signature of %s does not verify: %v", name, id, d.verifyErr)
			}
			if string(d.body) != string(stored[id]) {
				t.Errorf("%s: body %s, want the payload exactly as sent %s", name, d.body, stored[id])
			}
			if ct := d.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: content-type %q", name, ct)
			}
		}
		slices.Sort(ids)
		want := slices.Clone(tc.want)
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Errorf("%s received %v, want %v", name, ids, want)
		}
	}
}

func TestDevModeRetriesFailedDelivery(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, 1)
	b := setup(t, svixfake.Config{DevMode: true, DeliveryRetrySchedule: []time.Duration{10 * time.Millisecond}})
	app := createApp(t, b.client)
	addEndpoint(t, b.client, app, rc, models.EndpointIn{})
	msg := mustSend(t, b.client, app, "asset.ready", "k", nil, map[string]any{})

	if err := b.srv.WaitFor(testContext(t), func(s *svixfake.Server) bool {
		return len(s.AttemptsFor(msg.Id)) >= 2
	}); err != nil {
		t.Fatal(err)
	}
	got := b.srv.AttemptsFor(msg.Id)
	if len(got) != 2 || got[0].Status != http.StatusInternalServerError || got[0].Attempt != 1 ||
		!got[1].Success() || got[1].Attempt != 2 {
		t.Errorf("attempts = %+v, want 500 then 2xx", got)
	}
	deliveries := rc.received()
	if len(deliveries) != 2 || deliveries[0].header.Get("svix-id") != deliveries[1].header.Get("svix-id") {
		t.Errorf("deliveries = %+v, want two with the same svix-id", deliveries)
	}
}

func TestDevModeGivesUpAfterSchedule(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, 1000)
	b := setup(t, svixfake.Config{DevMode: true, DeliveryRetrySchedule: []time.Duration{time.Millisecond, time.Millisecond}})
	app := createApp(t, b.client)
	addEndpoint(t, b.client, app, rc, models.EndpointIn{})
	mustSend(t, b.client, app, "asset.ready", "k", nil, map[string]any{})

	waitAttempts(t, b.srv, 3)
	if err := b.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if got := b.srv.Attempts(); len(got) != 3 || got[2].Attempt != 3 || got[2].Success() {
		t.Errorf("attempts = %+v, want 3 failures", got)
	}
}

func TestDevModeCloseStopsPendingRetries(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, 1000)
	b := setup(t, svixfake.Config{DevMode: true, DeliveryRetrySchedule: []time.Duration{time.Hour}})
	app := createApp(t, b.client)
	addEndpoint(t, b.client, app, rc, models.EndpointIn{})
	mustSend(t, b.client, app, "asset.ready", "k", nil, map[string]any{})

	waitAttempts(t, b.srv, 1)
	// Returns without waiting the hour; goleak checks nothing is left.
	if err := b.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if got := b.srv.Attempts(); len(got) != 1 {
		t.Errorf("attempts = %+v, want 1", got)
	}
}

func TestNoDeliveryWithoutDevMode(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, 0)
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)
	addEndpoint(t, b.client, app, rc, models.EndpointIn{})
	mustSend(t, b.client, app, "asset.ready", "k", nil, map[string]any{})
	if err := b.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if len(b.srv.Attempts()) != 0 || len(rc.received()) != 0 {
		t.Errorf("attempts %+v, received %d; want none", b.srv.Attempts(), len(rc.received()))
	}
}

// TestDevModeSignsWithRotatedSecret: after a rotation, deliveries carry a
// signature for the new secret and one for the old (in its grace period),
// so a receiver that still holds the old secret verifies them.
func TestDevModeSignsWithRotatedSecret(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, 0)
	b := setup(t, svixfake.Config{DevMode: true})
	app := createApp(t, b.client)
	epID := addEndpoint(t, b.client, app, rc, models.EndpointIn{})
	old := rc.secret
	if err := b.client.Endpoint.RotateSecret(testContext(t), app, epID, models.EndpointSecretRotateIn{}, nil); err != nil {
		t.Fatal(err)
	}
	mustSend(t, b.client, app, "asset.ready", "rot-1", nil, map[string]any{"id": 1})
	waitAttempts(t, b.srv, 1)
	got := rc.received()
	if len(got) != 1 || got[0].verifyErr != nil {
		t.Fatalf("delivery with the old secret: %+v", got)
	}
	newSecret, err := b.client.Endpoint.GetSecret(testContext(t), app, epID)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := svix.NewWebhook(newSecret.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got[0].body, got[0].header); err != nil || newSecret.Key == old {
		t.Errorf("the new secret does not verify the delivery: %v", err)
	}
	if sigs := strings.Fields(got[0].header.Get("svix-signature")); len(sigs) != 2 {
		t.Errorf("svix-signature %q, want two signatures", got[0].header.Get("svix-signature"))
	}

	// A rotation without grace ends the old secret at once.
	zero := uint32(0)
	if err := b.client.Endpoint.RotateSecret(testContext(t), app, epID, models.EndpointSecretRotateIn{GracePeriodSeconds: &zero}, nil); err != nil {
		t.Fatal(err)
	}
	mustSend(t, b.client, app, "asset.ready", "rot-2", nil, map[string]any{"id": 2})
	waitAttempts(t, b.srv, 2)
	if sigs := strings.Fields(rc.received()[1].header.Get("svix-signature")); len(sigs) != 2 {
		// the first rotation's secret is still in its 24 h; the second's old one is not
		t.Errorf("after a rotation without grace: %d signatures, want 2 (new and the first old)", len(sigs))
	}
}
