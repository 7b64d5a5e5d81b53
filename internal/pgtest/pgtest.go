// Package pgtest gives each test a PostgreSQL schema of its own, migrated
// with the relay's schema, on the database named by TEST_DATABASE_URL or
// DATABASE_URL. Tests in one package, and packages, run in parallel without
// seeing each other's rows; the schema is dropped when the test ends.
//
// `make test` provides the database (a throwaway cluster when none answers).
// Running `go test` by hand needs one of the two variables set.
package pgtest

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
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
	pool, err := adminFor(base)
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v", redact(base), err)
	}
	return pool
}

// adminFor opens, once per process, the pool that creates and drops
// schemas on base.
func adminFor(base string) (*pgxpool.Pool, error) {
	adminOnce.Do(func() {
		cfg, err := pgxpool.ParseConfig(base)
		if err != nil {
			adminErr = err
			return
		}
		cfg.MaxConns = 4
		adminPool, adminErr = pgxpool.NewWithConfig(context.Background(), cfg)
	})
	return adminPool, adminErr
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
	pool := admin(tb)
	s, err := createSchema(context.Background(), pool, BaseURL(tb))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if os.Getenv("PGTEST_KEEP") != "" {
			tb.Logf("pgtest: keeping schema %s", s.Name)
			return
		}
		if err := dropSchema(pool, s.Name); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// createSchema creates an empty schema with a random name on base.
func createSchema(ctx context.Context, admin *pgxpool.Pool, base string) (Schema, error) {
	u, err := url.Parse(base)
	if err != nil {
		return Schema{}, fmt.Errorf("parse database URL: %w", err)
	}
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	name := "t_" + hex.EncodeToString(buf[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		return Schema{}, fmt.Errorf("create schema: %w", err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return Schema{Name: name, URL: u.String()}, nil
}

// dropSchema drops schema name and everything in it.
func dropSchema(admin *pgxpool.Pool, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := admin.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("drop schema %s: %w", name, err)
	}
	return nil
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

// ForExample is Migrated for runnable examples, which have no testing.TB:
// it exits the process on error, and returns the pool with a function that
// closes it and drops the schema.
func ForExample(ctx context.Context) (*pgxpool.Pool, func()) {
	base := cmp.Or(os.Getenv("TEST_DATABASE_URL"), os.Getenv("DATABASE_URL"))
	fail := func(err error) {
		log.Fatalf("pgtest: %v", err)
	}
	admin, err := adminFor(base)
	if err != nil {
		fail(fmt.Errorf("connect to %s: %w", redact(base), err))
	}
	s, err := createSchema(ctx, admin, base)
	if err != nil {
		fail(err)
	}
	pool, err := pgxpool.New(ctx, s.URL)
	if err != nil {
		fail(fmt.Errorf("open pool: %w", err))
	}
	if _, err := schema.Migrate(ctx, pool); err != nil {
		fail(fmt.Errorf("migrate schema %s: %w", s.Name, err))
	}
	return pool, func() {
		pool.Close()
		if err := dropSchema(admin, s.Name); err != nil {
			log.Printf("pgtest: %v", err)
		}
	}
}
