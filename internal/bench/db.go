package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/schema"
)

// benchSchema is one scenario's own schema, migrated like `relay migrate`
// does (the same schema.Migrate, in process).
type benchSchema struct {
	name string
	url  string // the database URL with search_path set to the schema
	pool *pgxpool.Pool
}

// newSchema creates and migrates schema name; maxConns sizes its pool.
// The pool's connections say they are the bench's (application_name), so
// that they are told apart from the relay's.
func (b *bench) newSchema(ctx context.Context, name string, maxConns int32) (*benchSchema, error) {
	name += "_" + b.runID // two benches on one database keep to their own schemas
	if _, err := b.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
		return nil, fmt.Errorf("drop old schema %s: %w", name, err)
	}
	if _, err := b.admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", name, err)
	}
	u, err := url.Parse(b.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	cfg, err := pgxpool.ParseConfig(u.String())
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = maxConns
	cfg.ConnConfig.RuntimeParams["application_name"] = "relay-bench"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if _, err := schema.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate schema %s: %w", name, err)
	}
	return &benchSchema{name: name, url: u.String(), pool: pool}, nil
}

// drop closes the pool and drops the schema, unless the bench keeps them.
func (b *bench) dropSchema(s *benchSchema) {
	s.pool.Close()
	if b.keepSchemas {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := b.admin.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{s.name}.Sanitize()+" CASCADE"); err != nil {
		b.logf("drop schema %s: %v", s.name, err)
	}
}

// eventTypes is the mix of events the bench writes.
var eventTypes = []string{"render.completed", "cut.completed", "asset.ready", "asset.pending_payment"}

// event returns row i of a run: its app, type and data. Every row has an
// asset of its own, so all ordering keys are distinct.
func event(run string, i int) (app, eventType, data string) {
	asset := i
	app = "acct-" + strconv.Itoa(i%64)
	eventType = eventTypes[i%len(eventTypes)]
	prev := ""
	if eventType == "asset.ready" {
		prev = `,"previous_state":"processing"`
	}
	data = `{"entity_id":"ent-` + run + `-` + strconv.Itoa(i) + `","asset_id":"asset-` + run + `-` + strconv.Itoa(asset) +
		`"` + prev + `,"duration_ms":` + strconv.Itoa(1000+i%90000) + `,"profile":"h264-1080p","bytes":` + strconv.Itoa(i*7919) + `}`
	return app, eventType, data
}

// undeliveredSQL counts the rows Svix has not accepted as recorded in the
// outbox; the alias keeps it out of the relay's statement count.
const undeliveredSQL = `SELECT count(*) AS bench_marker FROM outbox WHERE delivered_at IS NULL`

// waitRecorded polls until every row of the outbox is marked delivered.
func (b *bench) waitRecorded(ctx context.Context, pool *pgxpool.Pool) error {
	for {
		var n int64
		b.own.add()
		if err := pool.QueryRow(ctx, undeliveredSQL).Scan(&n); err != nil {
			return fmt.Errorf("count undelivered rows: %w", err)
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d rows still undelivered in the outbox: %w", n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
