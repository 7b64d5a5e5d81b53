package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/schema"
)

// Database is a test's own database on the server of TEST_DATABASE_URL or
// DATABASE_URL, for tests that cannot use a schema: a connection pooler
// that does not pass search_path on (PgBouncer before 1.20), or several
// relays that must each see a database of their own.
type Database struct {
	// Name is the database's name (t_ and 12 hex digits).
	Name string
	// URL connects to the database as the base URL's user; its search_path
	// is the server's default (public).
	URL string
}

// NewDatabase creates an empty database that is dropped, with any
// connection still open on it, when the test ends.
func NewDatabase(tb testing.TB) Database {
	tb.Helper()
	pool := admin(tb)
	base := BaseURL(tb)
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("pgtest: parse database URL: %v", err)
	}
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	name := "t_" + hex.EncodeToString(buf[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// CREATE DATABASE copies template1, which must have no other session:
	// tests creating databases at once retry on that error.
	for try := 0; ; try++ {
		_, err := pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		if err == nil {
			break
		}
		if try == 20 || ctx.Err() != nil {
			tb.Fatalf("pgtest: create database: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Cleanup(func() {
		if os.Getenv("PGTEST_KEEP") != "" {
			tb.Logf("pgtest: keeping database %s", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	q := u.Query()
	q.Del("search_path")
	u.RawQuery = q.Encode()
	return Database{Name: name, URL: u.String()}
}

// MigratedDatabase creates a database, applies the relay's migrations to
// it (in public) and returns it with a pool on it.
func MigratedDatabase(tb testing.TB) (Database, *pgxpool.Pool) {
	tb.Helper()
	db := NewDatabase(tb)
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		tb.Fatalf("pgtest: parse database URL: %v", err)
	}
	cfg.MaxConns = 10
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("pgtest: open pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := schema.Migrate(ctx, pool); err != nil {
		tb.Fatalf("pgtest: migrate database %s: %v", db.Name, err)
	}
	return db, pool
}
