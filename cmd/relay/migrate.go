package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pooler"
	"github.com/mediaplatform/relay/schema"
)

// MigrateCmd applies or lists migrations.
type MigrateCmd struct {
	Wait time.Duration `name:"wait" env:"RELAY_MIGRATE_WAIT" default:"60s" help:"How long to wait for the database to accept connections (a database container still starting); 0 tries once."`

	Up     MigrateUpCmd     `cmd:"" default:"1" help:"Apply pending migrations (the default)."`
	Status MigrateStatusCmd `cmd:"" help:"List migrations and whether each is applied."`
}

// Validate checks the flags (exit code 2).
func (m *MigrateCmd) Validate() error {
	if m.Wait < 0 {
		return usagef("RELAY_MIGRATE_WAIT (--wait) must be 0 or more, got %s", m.Wait)
	}
	return nil
}

// open opens the database and waits up to m.Wait for it to accept a
// connection.
func (m *MigrateCmd) open(ctx context.Context, g *Globals) (*pgxpool.Pool, error) {
	pool, err := g.pool(ctx, 0)
	if err != nil {
		return nil, err
	}
	if err := waitForDatabase(ctx, pool, m.Wait); err != nil {
		pool.Close()
		return nil, err
	}
	if err := refusePooler(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// refusePooler refuses a DATABASE_URL that goes through a connection
// pooler: migrations hold a session advisory lock from one statement to
// the next (which transaction pooling would take on one server connection
// and leave held there, or release on another) and run DDL that belongs
// on a connection of its own. relay migrate connects to PostgreSQL
// directly, whatever relay run and the producers use.
func refusePooler(ctx context.Context, pool *pgxpool.Pool) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	rep, err := pooler.Probe(pctx, pool.Config().ConnConfig)
	if err != nil {
		return err
	}
	if err := checkSearchPath(pool.Config().ConnConfig, rep); err != nil {
		return err
	}
	if rep.Pooler {
		return usagef("DATABASE_URL goes through a connection pooler (PgBouncer or the like: the server's backend differs from the connection's): relay migrate holds a session advisory lock across statements and must connect to PostgreSQL directly; give it the direct URL")
	}
	return nil
}

// waitForDatabase pings the database every half second until it answers,
// for at most wait. It gives up at once on an answer waiting cannot change
// (a refused password, a missing database): only a server that is not
// reachable yet, or is starting up, is waited for.
func waitForDatabase(ctx context.Context, pool *pgxpool.Pool, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	said := false
	for {
		tryCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := pool.Ping(tryCtx)
		cancel()
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code != "57P03" { // cannot_connect_now: starting up
			return fmt.Errorf("connect to database: %w", err)
		}
		if ctx.Err() != nil || !time.Now().Add(500*time.Millisecond).Before(deadline) {
			if wait == 0 {
				return fmt.Errorf("connect to database: %w", err)
			}
			return fmt.Errorf("connect to database: not accepting connections after waiting %s (RELAY_MIGRATE_WAIT): %w", wait, err)
		}
		if !said {
			fmt.Fprintf(os.Stderr, "relay: waiting up to %s for the database to accept connections (RELAY_MIGRATE_WAIT)\n", wait)
			said = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("connect to database: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// MigrateUpCmd applies pending migrations.
type MigrateUpCmd struct{}

// Run applies pending migrations and prints each one applied.
func (MigrateUpCmd) Run(ctx context.Context, g *Globals, m *MigrateCmd) error {
	pool, err := m.open(ctx, g)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := schema.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(os.Stdout, "nothing to apply: the schema is up to date")
		return nil
	}
	for _, m := range applied {
		fmt.Fprintf(os.Stdout, "applied %-6s %3d %s (%s)\n", m.Line, m.Version, m.Name, m.Duration.Round(100_000))
	}
	return nil
}

// MigrateStatusCmd lists migrations.
type MigrateStatusCmd struct{}

// Run prints every migration with its state.
func (MigrateStatusCmd) Run(ctx context.Context, g *Globals, m *MigrateCmd) error {
	pool, err := m.open(ctx, g)
	if err != nil {
		return err
	}
	defer pool.Close()
	status, err := schema.Status(ctx, pool)
	if err != nil {
		return err
	}
	pending := 0
	for _, m := range status {
		fmt.Fprintln(os.Stdout, m.String())
		if !m.Applied {
			pending++
		}
	}
	fmt.Fprintf(os.Stdout, "%d applied, %d pending\n", len(status)-pending, pending)
	return nil
}
