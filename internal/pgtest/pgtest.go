// Package pgtest gives each test a PostgreSQL schema of its own, migrated
// with the relay's schema, on the database named by TEST_DATABASE_URL or
// DATABASE_URL. Tests in one package, and packages, run in parallel without
// seeing each other's rows; the schema is dropped when the test ends.
//
// `make test` provides the database (a throwaway cluster when none answers).
// Running `go test` by hand needs one of the two variables set.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/schema"
)

var (
	adminOnce sync.Once
	adminPool *pgxpool.Pool
	adminErr  error
)

// BaseURL returns the database URL tests run against, failing the test
// when none is configured.
func BaseURL(tb testing.TB) string {
	tb.Helper()
	for _, name := range []string{"TEST_DATABASE_URL", "DATABASE_URL"} {
		if u := os.Getenv(name); u != "" {
			return u
		}
	}
	tb.Fatal("pgtest: set TEST_DATABASE_URL or DATABASE_URL to a PostgreSQL database (make test does this)")
	return ""
}

func admin(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	base := BaseURL(tb)
	adminOnce.Do(func() {
		cfg, err := pgxpool.ParseConfig(base)
		if err != nil {
			adminErr = err
			return
		}
		cfg.MaxConns = 4
		adminPool, adminErr = pgxpool.NewWithConfig(context.Background(), cfg)
	})
	if adminErr != nil {
		tb.Fatalf("pgtest: connect to %s: %v", redact(base), adminErr)
	}
	return adminPool
}

// Schema is a test's own schema.
type Schema struct {
	Name string
	// URL connects to the test database with search_path set to the schema;
	// hand it to a subprocess (the relay binary) or to another pool.
	URL string
}

// NewSchema creates an empty schema that is dropped when the test ends.
func NewSchema(tb testing.TB) Schema {
	tb.Helper()
	ctx := context.Background()
	pool := admin(tb)
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	name := "t_" + hex.EncodeToString(buf[:])
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("pgtest: create schema: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if os.Getenv("PGTEST_KEEP") != "" {
			tb.Logf("pgtest: keeping schema %s", name)
			return
		}
		if _, err := pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})

	u, err := url.Parse(BaseURL(tb))
	if err != nil {
		tb.Fatalf("pgtest: parse database URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return Schema{Name: name, URL: u.String()}
}

// Pool opens a pool on s; it is closed when the test ends.
func (s Schema) Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(s.URL)
	if err != nil {
		tb.Fatalf("pgtest: parse schema URL: %v", err)
	}
	cfg.MaxConns = 10
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("pgtest: open pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Migrated creates a schema, applies the relay's migrations to it and
// returns it with a pool on it.
func Migrated(tb testing.TB) (Schema, *pgxpool.Pool) {
	tb.Helper()
	s := NewSchema(tb)
	pool := s.Pool(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := schema.Migrate(ctx, pool); err != nil {
		tb.Fatalf("pgtest: migrate schema %s: %v", s.Name, err)
	}
	return s, pool
}

// Pool is Migrated for tests that need only the pool.
func Pool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	_, pool := Migrated(tb)
	return pool
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	q := u.Query()
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}
