package schema_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestMigration00010 takes an outbox with numbered and unnumbered rows
// from 00009 to 00010: numbered_through starts at the highest number
// handed out, the next step moves it, the step keeps running without a
// Sort (00009's setting survives the new body), and Down puts 00009 back.
func TestMigration00010(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewSchema(t).Pool(t)
	provider := stepper(t, pool)
	if _, err := provider.UpTo(ctx, 9); err != nil {
		t.Fatalf("migrate to 9: %v", err)
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	insert := `INSERT INTO outbox (app_id, event_type, data)
	           SELECT 'acme', 'cut.completed', jsonb_build_object('entity_id', 'c' || i, 'asset_id', 'a' || i) FROM generate_series(1, 7) i`
	exec(insert)
	exec(`SELECT outbox_sequence()`)
	exec(insert) // 7 rows left unnumbered

	if _, err := provider.UpTo(ctx, 10); err != nil {
		t.Fatalf("migrate to 10: %v", err)
	}
	through := func() int64 {
		t.Helper()
		var n int64
		if err := pool.QueryRow(ctx, `SELECT numbered_through FROM outbox_sequence_state`).Scan(&n); err != nil {
			t.Fatalf("read numbered_through: %v", err)
		}
		return n
	}
	if n := through(); n != 7 {
		t.Fatalf("numbered_through after the migration = %d, want 7 (the rows numbered before it)", n)
	}
	exec(`SELECT outbox_sequence()`)
	if n := through(); n != 14 {
		t.Fatalf("numbered_through after the next step = %d, want 14", n)
	}
	config := func() string {
		t.Helper()
		var c string
		if err := pool.QueryRow(ctx, `SELECT coalesce(array_to_string(proconfig, ','), '') FROM pg_proc WHERE oid = 'outbox_sequence(integer)'::regprocedure`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := config(); !strings.Contains(c, "enable_sort=off") {
		t.Errorf("outbox_sequence's settings after 00010: %q, want enable_sort=off kept", c)
	}

	if _, err := provider.DownTo(ctx, 9); err != nil {
		t.Fatalf("down to 9: %v", err)
	}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('outbox_sequence_state') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("after down: outbox_sequence_state exists = %v (err %v), want dropped", exists, err)
	}
	exec(insert)
	var n int
	if err := pool.QueryRow(ctx, `SELECT outbox_sequence()`).Scan(&n); err != nil || n != 7 {
		t.Fatalf("step after down: n = %d, err = %v; want 7", n, err)
	}
	if c := config(); !strings.Contains(c, "enable_sort=off") {
		t.Errorf("outbox_sequence's settings after down to 9: %q, want enable_sort=off", c)
	}
	if _, err := provider.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if n := through(); n != 21 {
		t.Fatalf("numbered_through after up again = %d, want 21", n)
	}
}
