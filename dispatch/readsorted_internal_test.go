package dispatch

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestReadSortedLeavesNoTransactionOpen: an admission read that fails (on
// the server, or while its rows are scanned) gives back no connection
// inside its transaction: the next user of the only connection of the
// pool sees neither the aborted transaction nor enable_sort off.
func TestReadSortedLeavesNoTransactionOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, shared := pgtest.Migrated(t)
	cfg := shared.Config()
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	r := &Relay{pool: pool}

	clean := func(what string) {
		t.Helper()
		var sortOn string
		if err := pool.QueryRow(ctx, `SHOW enable_sort`).Scan(&sortOn); err != nil {
			t.Fatalf("after %s: %v", what, err)
		}
		if sortOn != "on" {
			t.Errorf("after %s: enable_sort is %q on the pool's connection, want on", what, sortOn)
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
}
