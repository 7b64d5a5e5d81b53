package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestReadSortedLeavesNoTransactionOpen: an admission read that fails (on
// the server, or while its rows are scanned) gives back no connection
// inside its transaction: the next user of the only server connection
// sees neither the aborted transaction nor enable_sort off. Directly, and
// through PgBouncer in transaction pooling with one server connection, in
// the query modes the relay uses there (a connection kept in its failed
// transaction would hold that server connection from every other client).
func TestReadSortedLeavesNoTransactionOpen(t *testing.T) {
	t.Parallel()
	direct := func(t *testing.T) (*pgxpool.Config, *pgxpool.Config) {
		_, pool := pgtest.Migrated(t)
		return pool.Config(), pool.Config()
	}
	bouncer := func(mode string) func(t *testing.T) (*pgxpool.Config, *pgxpool.Config) {
		return func(t *testing.T) (*pgxpool.Config, *pgxpool.Config) {
			pgb := pgtest.StartPgBouncer(t, pgtest.PgBouncerConfig{PoolMode: "transaction", PoolSize: 1})
			cfg, err := pgxpool.ParseConfig(pgb.URL("postgres", "default_query_exec_mode="+mode))
			if err != nil {
				t.Fatal(err)
			}
			return cfg, cfg.Copy()
		}
	}
	for name, configs := range map[string]func(*testing.T) (*pgxpool.Config, *pgxpool.Config){
		"direct":           direct,
		"pgbouncer exec":   bouncer("exec"),
		"pgbouncer simple": bouncer("simple_protocol"),
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			readerCfg, otherCfg := configs(t)
			readerCfg.MaxConns, otherCfg.MaxConns = 1, 1
			reader, err := pgxpool.NewWithConfig(ctx, readerCfg)
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()
			other, err := pgxpool.NewWithConfig(ctx, otherCfg)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			r := &Relay{pool: reader}

			clean := func(what string) {
				t.Helper()
				for _, p := range []*pgxpool.Pool{reader, other} {
					var sortOn string
					if err := p.QueryRow(ctx, `SHOW enable_sort`).Scan(&sortOn); err != nil {
						t.Fatalf("after %s: %v", what, err)
					}
					if sortOn != "on" {
						t.Errorf("after %s: enable_sort is %q outside the read, want on", what, sortOn)
					}
				}
			}

			var n int
			if err := r.readSorted(ctx, `SELECT 1 / $1::int`, []any{0}, []any{&n}, func() error { return nil }); err == nil {
				t.Fatal("a division by zero read without error")
			}
			clean("a read the server failed")

			scanErr := errors.New("scan failed")
			err = r.readSorted(ctx, `SELECT g FROM generate_series(1, 3) g`, nil, []any{&n}, func() error { return scanErr })
			if !errors.Is(err, scanErr) {
				t.Fatalf("read with a failing row callback returned %v, want %v", err, scanErr)
			}
			clean("a read whose row callback failed")

			var inside string
			if err := r.readSorted(ctx, `SHOW enable_sort`, nil, []any{&inside}, func() error { return nil }); err != nil {
				t.Fatal(err)
			}
			if inside != "off" {
				t.Errorf("enable_sort is %q inside the read, want off", inside)
			}
			clean("a read that succeeded")
		})
	}
}
