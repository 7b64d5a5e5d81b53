package main_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// A relay holds at most RELAY_DB_MAX_CONNS + 2 connections (the pool, River's
// listener, which leaves the pool's count, and the outbox LISTEN, outside
// the pool), counted in pg_stat_activity while it drains a backlog.
func TestConnectionBudget(t *testing.T) {
	t.Parallel()
	const maxConns = 4
	s, pool := pgtest.Migrated(t)
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	appName := "relay-budget-" + hex.EncodeToString(buf[:])
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", appName) // this relay's connections alone
	u.RawQuery = q.Encode()

	fake := svixfake.NewStarted(t, svixfake.Config{})
	fake.SetLatency(5*time.Millisecond, 0)
	p := start(t, "relay run", runEnv(u.String(), fake, "RELAY_DB_MAX_CONNS=4", "RELAY_CONCURRENCY=64", "RELAY_CLAIM_BATCH=50"), "run")
	p.waitReady(t)

	conns := func() int {
		var n int
		if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", appName).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	const rows = 1500
	insertRows(t, pool, rows, 500)
	peak := 0
	waitFor(t, 2*time.Minute, "the backlog delivered", func() bool {
		peak = max(peak, conns())
		return count(t, pool, deliveredSQL) >= rows
	})
	peak = max(peak, conns())
	t.Logf("peak connections with RELAY_DB_MAX_CONNS=%d: %d", maxConns, peak)
	if peak > maxConns+2 {
		t.Errorf("the relay held %d connections, more than RELAY_DB_MAX_CONNS + 2 = %d", peak, maxConns+2)
	}
	// The two listeners are there beyond the pool: the budget's + 2 is
	// not padding.
	if idle := conns(); idle < 2 {
		t.Errorf("an idle relay holds %d connections named %s, want at least its 2 listeners", idle, appName)
	}
	p.stop(t, 15*time.Second)
}
