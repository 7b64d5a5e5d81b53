package schema_test

import (
	"context"
	"testing"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/schema"
)

// TestMigration00004KeepsOrderSeqOrder upgrades a database holding rows
// written under 00002: undelivered rows of an asset whose order_seq order
// differs from their id order (two transactions that committed in the other
// order than their ids) keep their order_seq order in commit_seq; the per-key
// lock trigger is gone.
func TestMigration00004KeepsOrderSeqOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewSchema(t).Pool(t)

	provider := stepper(t, pool)
	if _, err := provider.UpTo(ctx, 3); err != nil {
		t.Fatalf("migrate to 3: %v", err)
	}

	ids := map[string]int64{}
	for _, name := range []string{"a1_first_id", "a1_second_id", "a2_first", "a2_second", "a3_delivered_first_id", "a3_delivered_second_id"} {
		asset := "asset_" + name[1:2]
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'render.completed',
			jsonb_build_object('entity_id', $1::text, 'asset_id', $2::text)) RETURNING id`, name, asset).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[name] = id
	}
	// asset_1's second id committed first; asset_3's too, but both rows
	// are delivered.
	if _, err := pool.Exec(ctx, `UPDATE outbox SET order_seq = 3 - order_seq WHERE data ->> 'asset_id' IN ('asset_1', 'asset_3')`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE outbox SET delivered_at = now() WHERE data ->> 'asset_id' = 'asset_3'`); err != nil {
		t.Fatal(err)
	}

	if _, err := schema.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if _, err := pool.Exec(ctx, `SELECT outbox_sequence()`); err != nil {
		t.Fatal(err)
	}
	seq := func(name string) int64 {
		var s int64
		if err := pool.QueryRow(ctx, `SELECT commit_seq FROM outbox WHERE id = $1`, ids[name]).Scan(&s); err != nil {
			t.Fatalf("commit_seq of %s: %v", name, err)
		}
		return s
	}
	if !(seq("a1_second_id") < seq("a1_first_id")) {
		t.Errorf("asset_1: commit_seq %d (order_seq 1), %d (order_seq 2): want order_seq order", seq("a1_second_id"), seq("a1_first_id"))
	}
	if !(seq("a2_first") < seq("a2_second")) {
		t.Errorf("asset_2: commit_seq %d, %d: want id order", seq("a2_first"), seq("a2_second"))
	}
	var numbers, distinct int
	if err := pool.QueryRow(ctx, `SELECT count(commit_seq), count(DISTINCT commit_seq) FROM outbox`).Scan(&numbers, &distinct); err != nil {
		t.Fatal(err)
	}
	if numbers != len(ids) || distinct != len(ids) {
		t.Errorf("%d rows numbered, %d distinct numbers; want %d of each", numbers, distinct, len(ids))
	}
	var trigger, keyTable bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'outbox_2_order' AND tgrelid = 'outbox'::regclass),
		to_regclass('outbox_order_key') IS NOT NULL`).Scan(&trigger, &keyTable); err != nil {
		t.Fatal(err)
	}
	if trigger || keyTable {
		t.Errorf("after 00004: trigger outbox_2_order present = %v, outbox_order_key present = %v; want both gone", trigger, keyTable)
	}
	// And back down: 00002's trigger numbers new rows again after the
	// ones already numbered.
	if _, err := provider.DownTo(ctx, 3); err != nil {
		t.Fatalf("down to 3: %v", err)
	}
	var orderSeq int64
	if err := pool.QueryRow(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'render.completed',
		'{"entity_id": "x", "asset_id": "asset_1"}') RETURNING order_seq`).Scan(&orderSeq); err != nil {
		t.Fatal(err)
	}
	if orderSeq != 3 {
		t.Errorf("after down to 3, a new asset_1 row got order_seq %d, want 3", orderSeq)
	}
}
