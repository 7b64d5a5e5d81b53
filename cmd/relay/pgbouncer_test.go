package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/outbox"
)

// The relay (relay run --poll-only) and producers (the Go package and
// plain SQL) work through PgBouncer in transaction pooling mode with a
// pool smaller than its clients, so server connections are shared: every
// row is delivered exactly once and in order per asset, also when the
// relay is killed mid-backlog. relay migrate, and relay run without
// --poll-only, refuse the pooler. The database is migrated directly.
func TestPgBouncer(t *testing.T) {
	t.Parallel()
	const (
		poolSize = 3  // server connections PgBouncer opens to the database
		assets   = 24 // ordering keys
		backlog  = 20 // rows per asset written before the relay starts
		live     = 5  // rows per asset written while it runs
	)
	db, direct := pgtest.MigratedDatabase(t)
	pgb := pgtest.StartPgBouncer(t, pgtest.PgBouncerConfig{PoolMode: "transaction", PoolSize: poolSize})
	viaURL := pgb.URL(db.Name) // as an operator writes it: the relay picks pgx's exec mode itself
	fake := svixfake.NewStarted(t, svixfake.Config{})
	fake.SetLatency(10*time.Millisecond, 0)

	// What needs a session of its own is refused, naming the fix.
	if code, _, stderr := relay(t, relayEnv("DATABASE_URL="+viaURL), "migrate"); code != 2 || !strings.Contains(stderr, "connection pooler") {
		t.Errorf("relay migrate through PgBouncer: exit %d, stderr %q; want 2 naming the pooler", code, stderr)
	}
	if code, _, stderr := relay(t, runEnv(viaURL, fake), "run"); code != 2 || !strings.Contains(stderr, "RELAY_POLL_ONLY=true") {
		t.Errorf("relay run without --poll-only through PgBouncer in transaction mode: exit %d, stderr %q; want 2 naming RELAY_POLL_ONLY", code, stderr)
	}

	// Producers write through PgBouncer too: pgx in exec mode (no named
	// prepared statements) for the Go package, the simple protocol for
	// plain SQL.
	goPool := pgbouncerPool(t, pgb.URL(db.Name, "default_query_exec_mode=exec"))
	sqlPool := pgbouncerPool(t, pgb.URL(db.Name, "default_query_exec_mode=simple_protocol"))
	produce := func(t *testing.T, from, to int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, assets)
		for a := range assets {
			wg.Go(func() {
				for seq := from; seq < to; seq++ {
					if err := produceRow(t.Context(), goPool, sqlPool, a, seq); err != nil {
						errs <- fmt.Errorf("asset %d row %d: %w", a, seq, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	produce(t, 0, backlog)

	var sample poolSample
	stopSampling := sample.run(t, pgb, db.Name)
	defer stopSampling()

	env := append([]string{"RELAY_POLL_ONLY=true", "RELAY_DB_MAX_CONNS=6"}, bulk...)
	first := start(t, "relay run (killed)", runEnv(viaURL, fake, env...), "run")
	waitFor(t, time.Minute, "a first delivered rows", func() bool {
		if !first.running() {
			t.Fatalf("relay exited %d before the kill", first.code)
		}
		return count(t, direct, deliveredSQL) >= 50
	})
	first.signal(t, syscall.SIGKILL)
	first.wait(t, 10*time.Second)
	killed := time.Now()
	if n := count(t, direct, deliveredSQL); n >= assets*backlog {
		t.Fatalf("all %d rows were delivered before the kill: the test proves nothing", n)
	}
	if first.countLogs("a connection pooler answers DATABASE_URL") != 1 {
		t.Errorf("the relay did not log the pooler it found")
	}

	second := start(t, "relay run (successor)", runEnv(viaURL, fake, env...), "run")
	produce(t, backlog, backlog+live)
	done := waitDelivered(t, direct, assets*(backlog+live), recoveryBound)
	t.Logf("every row delivered %s after the kill", done.Sub(killed).Round(100*time.Millisecond))
	stopSampling()

	assertExactlyOnce(t, direct, fake, assets*(backlog+live))
	assertAssetOrder(t, fake, assets, backlog+live)
	t.Logf("PgBouncer pool %s: at most %d client and %d server connections at once", db.Name, sample.maxClients, sample.maxServers)
	if sample.maxServers > poolSize {
		t.Errorf("PgBouncer opened %d server connections, more than its pool of %d", sample.maxServers, poolSize)
	}
	if sample.maxClients <= poolSize {
		t.Errorf("at most %d clients at once: the pool of %d was not shared", sample.maxClients, poolSize)
	}
	if !second.running() {
		t.Errorf("the successor exited %d", second.code)
	}
}

// relay serve's live stream, polling (--live-poll-only), streams rows
// through PgBouncer in transaction mode; without --live-poll-only it is
// refused.
func TestPgBouncerServeLive(t *testing.T) {
	t.Parallel()
	db, direct := pgtest.MigratedDatabase(t)
	pgb := pgtest.StartPgBouncer(t, pgtest.PgBouncerConfig{PoolMode: "transaction", PoolSize: 2})
	viaURL := pgb.URL(db.Name)

	env := relayEnv("DATABASE_URL="+viaURL, "SVIX_AUTH_TOKEN=testsk_unused", "SVIX_SERVER_URL=http://127.0.0.1:1",
		"RELAY_SERVE_ADDR="+freeAddr(t), "RELAY_LIVE_SECRET="+liveSecret)
	if code, _, stderr := relay(t, env, "serve"); code != 2 || !strings.Contains(stderr, "RELAY_LIVE_POLL_ONLY=true") {
		t.Errorf("relay serve with the live stream listening through PgBouncer: exit %d, stderr %q; want 2 naming RELAY_LIVE_POLL_ONLY", code, stderr)
	}

	addr := freeAddr(t)
	p := serveLive(t, "relay serve", viaURL, addr, "RELAY_LIVE_POLL_ONLY=true", "RELAY_LIVE_POLL_INTERVAL=100ms")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/live", nil)
	req.Header.Set("Authorization", "Bearer "+liveToken(t, "acme"))
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/live through PgBouncer: %d", resp.StatusCode)
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				events <- sc.Text()
			}
		}
	}()
	producer := pgbouncerPool(t, pgb.URL(db.Name, "default_query_exec_mode=exec"))
	for i := range 3 {
		insertLive(t, producer, "acme", fmt.Sprint(i))
	}
	for i := range 3 {
		select {
		case e := <-events:
			if want := fmt.Sprintf(`"entity_id": "%d"`, i); !strings.Contains(e, want) {
				t.Fatalf("event %d: %s, want %s", i, e, want)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("event %d did not arrive within 15s", i)
		}
	}
	if n := count(t, direct, "commit_seq IS NOT NULL"); n != 3 {
		t.Errorf("%d rows numbered, want 3", n)
	}
	p.stop(t, 10*time.Second)
	for range events {
	}
}

// pgbouncerPool opens a producer's pool on url (through PgBouncer).
func pgbouncerPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// produceRow writes row seq of asset a in a transaction of its own, as a
// product service would: even assets with the Go package, odd ones with
// plain SQL. Rows of one asset commit one after the other, so seq is their
// commit order.
func produceRow(ctx context.Context, goPool, sqlPool *pgxpool.Pool, a, seq int) error {
	app, asset := fmt.Sprintf("app-%d", a%3), fmt.Sprintf("asset_%d", a)
	entity := fmt.Sprintf("render_%d_%d", a, seq)
	if a%2 == 0 {
		ev, err := outbox.NewEvent(app, outbox.RenderCompleted(app, entity, asset).Type,
			map[string]any{"entity_id": entity, "asset_id": asset, "seq": seq})
		if err != nil {
			return err
		}
		return pgx.BeginFunc(ctx, goPool, func(tx pgx.Tx) error {
			_, err := outbox.Emit(ctx, tx, ev)
			return err
		})
	}
	return pgx.BeginFunc(ctx, sqlPool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ($1, 'render.completed', $2::jsonb)`,
			app, fmt.Sprintf(`{"entity_id": %q, "asset_id": %q, "seq": %d}`, entity, asset, seq))
		return err
	})
}

// assertAssetOrder checks that Svix accepted each asset's rows in seq
// order.
func assertAssetOrder(t *testing.T, fake *svixfake.Server, assets, perAsset int) {
	t.Helper()
	next := map[string]int{}
	for _, m := range fake.AllMessages() {
		var p struct {
			Data struct {
				AssetID string `json:"asset_id"`
				Seq     int    `json:"seq"`
			} `json:"data"`
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.Data.Seq != next[p.Data.AssetID] {
			t.Errorf("%s: svix accepted row %d when row %d was next", p.Data.AssetID, p.Data.Seq, next[p.Data.AssetID])
		}
		next[p.Data.AssetID] = p.Data.Seq + 1
	}
	if len(next) != assets {
		t.Errorf("svix has messages of %d assets, want %d", len(next), assets)
	}
	for asset, n := range next {
		if n != perAsset {
			t.Errorf("%s: %d rows in order, want %d", asset, n, perAsset)
		}
	}
}

// poolSample records the most clients and server connections PgBouncer's
// pool of one database had at once (SHOW POOLS on its admin console).
type poolSample struct {
	mu                     sync.Mutex
	maxClients, maxServers int
}

func (s *poolSample) run(t *testing.T, pgb *pgtest.PgBouncer, dbName string) (stop func()) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), pgb.AdminURL())
	if err != nil {
		t.Fatalf("connect to the PgBouncer admin console: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		defer conn.Close(context.Background())
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if clients, servers, ok := showPools(ctx, conn, dbName); ok {
				s.mu.Lock()
				s.maxClients, s.maxServers = max(s.maxClients, clients), max(s.maxServers, servers)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { cancel(); wg.Wait() }) }
}

// showPools sums the client and server connections of dbName's pools.
func showPools(ctx context.Context, conn *pgx.Conn, dbName string) (clients, servers int, ok bool) {
	rows, err := conn.Query(ctx, "SHOW POOLS")
	if err != nil {
		return 0, 0, false
	}
	defer rows.Close()
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return 0, 0, false
		}
		col := map[string]any{}
		for i, f := range rows.FieldDescriptions() {
			col[f.Name] = vals[i]
		}
		if col["database"] != dbName {
			continue
		}
		n := func(name string) int {
			switch v := col[name].(type) {
			case int64:
				return int(v)
			case int32:
				return int(v)
			case string:
				var x int
				fmt.Sscan(v, &x)
				return x
			}
			return 0
		}
		clients += n("cl_active") + n("cl_waiting")
		servers += n("sv_active") + n("sv_idle") + n("sv_used") + n("sv_tested") + n("sv_login")
	}
	return clients, servers, rows.Err() == nil
}
