package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// An asset's pending_payment is being sent when the relay is killed; its
// ready, written after it, must still reach Svix second, after a new
// relay takes the crashed send back.
func TestOrderingAcrossKill(t *testing.T) {
	t.Parallel()
	const assets = 20
	b := setup(t, svixfake.Config{})

	// The first send of each pending_payment hangs past the kill.
	var mu sync.Mutex
	hung := map[string]bool{}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	b.fake.SetInterceptor(func(r *svixfake.Request) (svixfake.Reply, bool) {
		if r.Method != http.MethodPost || r.EventType != "asset.pending_payment" || !strings.HasSuffix(r.Path, "/msg") {
			return svixfake.Reply{}, false
		}
		mu.Lock()
		first := !hung[r.EventID]
		hung[r.EventID] = true
		mu.Unlock()
		if !first {
			return svixfake.Reply{}, false
		}
		select {
		case <-release:
		case <-time.After(time.Minute):
		}
		return svixfake.Reply{Drop: true}, true
	})

	first := b.run(t, "relay run (killed)", bulk...)
	first.waitReady(t)
	for i := range assets {
		if _, err := b.pool.Exec(t.Context(), `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'asset.pending_payment', $1)`,
			fmt.Sprintf(`{"entity_id": "asset_%d", "asset_id": "asset_%d"}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "every pending_payment send in flight", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(hung) == assets
	})
	for i := range assets {
		if _, err := b.pool.Exec(t.Context(), `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'asset.ready', $1)`,
			fmt.Sprintf(`{"entity_id": "asset_%d", "asset_id": "asset_%d", "previous_state": "pending_payment"}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	first.signal(t, syscall.SIGKILL)
	first.wait(t, 10*time.Second)
	killed := time.Now()

	b.run(t, "relay run (successor)", bulk...)
	done := waitDelivered(t, b.pool, 2*assets, recoveryBound)
	t.Logf("every row delivered %s after the kill", done.Sub(killed).Round(100*time.Millisecond))

	order := map[string][]string{}
	for _, m := range b.fake.AllMessages() {
		var p struct {
			Data struct {
				AssetID string `json:"asset_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			t.Fatal(err)
		}
		order[p.Data.AssetID] = append(order[p.Data.AssetID], m.EventType)
	}
	if len(order) != assets {
		t.Fatalf("svix has messages for %d assets, want %d", len(order), assets)
	}
	for asset, types := range order {
		if len(types) != 2 || types[0] != "asset.pending_payment" || types[1] != "asset.ready" {
			t.Errorf("%s: svix accepted %v, want pending_payment then ready", asset, types)
		}
	}
	assertExactlyOnce(t, b.pool, b.fake, 2*assets)
}
