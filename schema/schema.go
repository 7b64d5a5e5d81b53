// Package schema owns the relay's database schema: the outbox table, its
// validation trigger and replay function (embedded, numbered SQL migrations
// run by goose), and River's job tables (run by rivermigrate).
//
// Both sets of migrations target the first schema of the connection's
// search_path, so a deployment that keeps the relay out of "public" sets
// search_path on DATABASE_URL (for example
// postgres://host/db?search_path=relay) and creates that schema once. Migrate
// holds a PostgreSQL advisory lock, keyed on that schema, around both sets,
// so several processes may run it at once: one applies, the others wait and
// then find nothing to do.
package schema

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// VersionTable is the table in which goose records the outbox migrations
// applied. River records its own in river_migration.
const VersionTable = "outbox_schema_version"

// Line names a set of migrations in a report.
type Line string

const (
	// LineOutbox is the relay's own schema (outbox table and functions).
	LineOutbox Line = "outbox"
	// LineRiver is River's job queue schema.
	LineRiver Line = "river"
)

// Migration is one migration in a report.
type Migration struct {
	Line     Line
	Version  int64
	Name     string
	Applied  bool      // in Status: whether it is applied
	At       time.Time // in Status: when it was applied (outbox line only)
	Duration time.Duration
}

// String renders a migration for humans, e.g. "outbox 1 outbox (applied)".
func (m Migration) String() string {
	state := "pending"
	if m.Applied {
		state = "applied"
	}
	return fmt.Sprintf("%-6s %4d  %-40s %s", m.Line, m.Version, m.Name, state)
}

// Migrate applies every pending migration of both lines, the outbox first,
// and returns those it applied (none on a second run).
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	var applied []Migration
	err := withLock(ctx, pool, func() error {
		provider, err := newProvider(pool)
		if err != nil {
			return err
		}
		defer provider.Close()
		results, err := provider.Up(ctx)
		if err != nil {
			return fmt.Errorf("apply outbox migrations: %w", err)
		}
		for _, r := range results {
			applied = append(applied, Migration{
				Line: LineOutbox, Version: r.Source.Version, Name: migrationName(r.Source.Path),
				Applied: true, Duration: r.Duration,
			})
		}

		migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
		if err != nil {
			return fmt.Errorf("create river migrator: %w", err)
		}
		res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
		if err != nil {
			return fmt.Errorf("apply river migrations: %w", err)
		}
		for _, v := range res.Versions {
			applied = append(applied, Migration{
				Line: LineRiver, Version: int64(v.Version), Name: v.Name, Applied: true, Duration: v.Duration,
			})
		}
		return nil
	})
	return applied, err
}

// Status lists every migration of both lines with whether it is applied.
func Status(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	provider, err := newProvider(pool)
	if err != nil {
		return nil, err
	}
	defer provider.Close()
	statuses, err := provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read outbox migration status: %w", err)
	}
	var out []Migration
	for _, s := range statuses {
		out = append(out, Migration{
			Line: LineOutbox, Version: s.Source.Version, Name: migrationName(s.Source.Path),
			Applied: s.State == goose.StateApplied, At: s.AppliedAt,
		})
	}

	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return nil, fmt.Errorf("create river migrator: %w", err)
	}
	existing, err := migrator.ExistingVersions(ctx)
	if err != nil {
		// A database River has never touched has no river_migration table.
		existing = nil
		var exists bool
		if qerr := pool.QueryRow(ctx, `SELECT to_regclass('river_migration') IS NOT NULL`).Scan(&exists); qerr != nil || exists {
			return nil, fmt.Errorf("read river migration status: %w", err)
		}
	}
	done := make(map[int]bool, len(existing))
	for _, m := range existing {
		done[m.Version] = true
	}
	for _, m := range migrator.AllVersions() {
		out = append(out, Migration{Line: LineRiver, Version: int64(m.Version), Name: m.Name, Applied: done[m.Version]})
	}
	return out, nil
}

// withLock runs fn while holding a session advisory lock keyed on the
// target schema, on a connection of its own.
func withLock(ctx context.Context, pool *pgxpool.Pool, fn func() error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection for migration lock: %w", err)
	}
	defer conn.Release()

	var target *string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&target); err != nil {
		return fmt.Errorf("read current schema: %w", err)
	}
	if target == nil {
		var path string
		_ = conn.QueryRow(ctx, `SHOW search_path`).Scan(&path)
		return fmt.Errorf("no schema of search_path %q exists: create it first (CREATE SCHEMA ...)", path)
	}
	const lockSQL = `SELECT pg_advisory_lock(hashtextextended('relay.schema.migrate:' || $1, 0))`
	if _, err := conn.Exec(ctx, lockSQL, *target); err != nil {
		return fmt.Errorf("take migration lock on schema %q: %w", *target, err)
	}
	defer func() {
		// Unlock even when ctx is done; closing the connection would also
		// release it, so a failure here only costs a log-free retry.
		const unlockSQL = `SELECT pg_advisory_unlock(hashtextextended('relay.schema.migrate:' || $1, 0))`
		if _, err := conn.Exec(context.WithoutCancel(ctx), unlockSQL, *target); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) //nolint:errcheck // the server drops the lock with the session
		}
	}()
	return fn()
}

func newProvider(pool *pgxpool.Pool) (*goose.Provider, error) {
	fsys, err := Migrations()
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDBFromPool(pool)
	provider, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(VersionTable),
		goose.WithDisableGlobalRegistry(true),
		goose.WithLogger(goose.NopLogger()),
	)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("load outbox migrations: %w", err)
	}
	return provider, nil
}

// Migrations returns the embedded outbox migrations after checking that
// they are numbered 1, 2, 3... without gaps or duplicates.
func Migrations() (fs.FS, error) {
	fsys, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("list embedded migrations: %w", err)
	}
	var versions []int
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %q: name must start with a number and an underscore", e.Name())
		}
		versions = append(versions, v)
	}
	slices.Sort(versions)
	for i, v := range versions {
		if v != i+1 {
			return nil, errors.New("migrations must be numbered 1, 2, 3... without gaps: found " + fmt.Sprint(versions))
		}
	}
	return fsys, nil
}

func migrationName(path string) string {
	name := strings.TrimSuffix(path, ".sql")
	if _, rest, ok := strings.Cut(name, "_"); ok {
		return rest
	}
	return name
}
