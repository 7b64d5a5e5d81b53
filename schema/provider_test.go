package schema_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/mediaplatform/relay/schema"
)

// stepper is a goose provider over the outbox's migrations, on pool, for
// tests that stop at a version (UpTo, DownTo); it is closed with the test.
func stepper(t *testing.T, pool *pgxpool.Pool) *goose.Provider {
	t.Helper()
	fsys, err := schema.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { db.Close() })
	provider, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(schema.VersionTable), goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger()))
	if err != nil {
		t.Fatal(err)
	}
	return provider
}
