package schema_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/schema"
)

// seqIndexes lists, for every index of the outbox and its partitions
// named *_key_idx or *_commit_seq_idx, its name and definition, and how
// many indexes are left over from a swap (*_new) or invalid.
func seqIndexes(ctx context.Context, t *testing.T, pool *pgxpool.Pool) (defs map[string]string, leftovers int) {
	t.Helper()
	rows, err := pool.Query(ctx, `
SELECT c.relname, pg_get_indexdef(c.oid), c.relname LIKE '%\_new' OR NOT x.indisvalid
  FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
 WHERE x.indrelid = 'outbox'::regclass
    OR x.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'outbox'::regclass)`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	defs = map[string]string{}
	for rows.Next() {
		var name, def string
		var left bool
		if err := rows.Scan(&name, &def, &left); err != nil {
			t.Fatal(err)
		}
		if left {
			leftovers++
		}
		if strings.HasSuffix(name, "_key_idx") || strings.HasSuffix(name, "_commit_seq_idx") {
			defs[name] = def
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return defs, leftovers
}

// checkSeqIndexes fails unless the outbox and each of its partitions
// have their key and commit_seq indexes under their usual names, the key
// index whole and the commit_seq one partial (WHERE commit_seq IS NOT
// NULL) or not, and nothing is left over.
func checkSeqIndexes(ctx context.Context, t *testing.T, pool *pgxpool.Pool, partial bool) {
	t.Helper()
	var parts []string
	rows, err := pool.Query(ctx, `SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'outbox'::regclass`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	rows.Close()
	defs, leftovers := seqIndexes(ctx, t, pool)
	if leftovers != 0 {
		t.Errorf("%d indexes left over (_new or invalid): %v", leftovers, defs)
	}
	if want := 2 * (len(parts) + 1); len(defs) != want {
		t.Errorf("%d key and commit_seq indexes, want %d (2 × the outbox and its %d partitions): %v", len(defs), want, len(parts), defs)
	}
	for _, table := range append(parts, "outbox") {
		for _, suffix := range []string{"_key_idx", "_commit_seq_idx"} {
			def, ok := defs[table+suffix]
			if !ok {
				t.Errorf("no index %s%s", table, suffix)
				continue
			}
			if got, want := strings.Contains(def, "commit_seq IS NOT NULL"), partial && suffix == "_commit_seq_idx"; got != want {
				t.Errorf("%s%s: %s; want partial on commit_seq = %v", table, suffix, def, want)
			}
		}
	}
}

// TestMigration00012 takes an outbox with numbered and unnumbered rows
// from 11 to 12 and back, as a small outbox is migrated (one transaction),
// and checks that a partition made afterwards gets the partial indexes.
func TestMigration00012(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewSchema(t).Pool(t)
	provider := stepper(t, pool)
	if _, err := provider.UpTo(ctx, 11); err != nil {
		t.Fatalf("migrate to 11: %v", err)
	}
	insert := `INSERT INTO outbox (app_id, event_type, data)
	           SELECT 'acme', 'cut.completed', jsonb_build_object('entity_id', 'c' || i, 'asset_id', 'a' || (i % 3)) FROM generate_series(1, 9) i`
	for _, sql := range []string{insert, `SELECT outbox_sequence()`, insert} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	checkSeqIndexes(ctx, t, pool, false)
	if _, err := provider.UpTo(ctx, 12); err != nil {
		t.Fatalf("migrate to 12: %v", err)
	}
	checkSeqIndexes(ctx, t, pool, true)
	var numbered, unnumbered int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE commit_seq IS NOT NULL), count(*) FILTER (WHERE commit_seq IS NULL) FROM outbox`).Scan(&numbered, &unnumbered); err != nil || numbered != 9 || unnumbered != 9 {
		t.Fatalf("rows after 12: %d numbered, %d not (err %v); want 9 and 9", numbered, unnumbered, err)
	}
	if _, err := pool.Exec(ctx, `SELECT outbox_sequence()`); err != nil {
		t.Fatalf("numbering step at 12: %v", err)
	}

	// A partition made now copies the outbox's indexes, under its names.
	if _, err := pool.Exec(ctx, `UPDATE outbox_partition_config SET partitions_ahead = partitions_ahead + 1`); err != nil {
		t.Fatal(err)
	}
	var made int
	if err := pool.QueryRow(ctx, `SELECT outbox_partitions_create()`).Scan(&made); err != nil || made != 1 {
		t.Fatalf("outbox_partitions_create: %d made, err %v; want 1", made, err)
	}
	checkSeqIndexes(ctx, t, pool, true)

	if _, err := provider.DownTo(ctx, 11); err != nil {
		t.Fatalf("down to 11: %v", err)
	}
	checkSeqIndexes(ctx, t, pool, false)
	if _, err := provider.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	checkSeqIndexes(ctx, t, pool, true)
}

// TestMigration00012Concurrently runs 12's swap as on an outbox too large
// for one transaction (CREATE INDEX CONCURRENTLY on each partition, then
// the rename), from a state an interrupted run left: one partition
// already has the new index, another an invalid one. It runs in a
// database of its own, since a concurrent build waits for every older
// transaction of its database.
func TestMigration00012Concurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := schema.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { sqlDB.Close() })
	if err := schema.SwapIndexesConcurrently(ctx, sqlDB, false); err != nil {
		t.Fatalf("swap to full indexes: %v", err)
	}
	checkSeqIndexes(ctx, t, pool, false)
	if _, err := pool.Exec(ctx, `INSERT INTO outbox (app_id, event_type, data)
	           SELECT 'acme', 'cut.completed', jsonb_build_object('entity_id', 'c' || i, 'asset_id', 'a' || (i % 3)) FROM generate_series(1, 9) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT outbox_sequence()`); err != nil {
		t.Fatal(err)
	}

	// What an interrupted run leaves: the new parent index, one partition
	// done and attached, another with an invalid index of the name (the
	// remains of a concurrent build that failed).
	var current string
	if err := pool.QueryRow(ctx, `SELECT partition::text FROM outbox_partitions WHERE now() >= from_time AND now() < to_time`).Scan(&current); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`CREATE UNIQUE INDEX outbox_commit_seq_idx_new ON ONLY outbox (commit_seq, partition_at) WHERE commit_seq IS NOT NULL`,
		`CREATE UNIQUE INDEX outbox_legacy_commit_seq_idx_new ON outbox_legacy (commit_seq, partition_at) WHERE commit_seq IS NOT NULL`,
		`ALTER INDEX outbox_commit_seq_idx_new ATTACH PARTITION outbox_legacy_commit_seq_idx_new`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	failed := `CREATE UNIQUE INDEX CONCURRENTLY ` + current + `_commit_seq_idx_new ON ` + current + ` (app_id)`
	if _, err := pool.Exec(ctx, failed); err == nil {
		t.Fatalf("%s: no error, want a unique violation (every row has app acme)", failed)
	}
	if _, left := seqIndexes(ctx, t, pool); left != 3 {
		t.Fatalf("%d leftovers before the swap, want 3 (two _new, one of them invalid, and the parent)", left)
	}
	if err := schema.SwapIndexesConcurrently(ctx, sqlDB, true); err != nil {
		t.Fatalf("swap to partial indexes: %v", err)
	}
	checkSeqIndexes(ctx, t, pool, true)
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE commit_seq > 0`).Scan(&n); err != nil || n != 9 {
		t.Fatalf("numbered rows after the swap: %d (err %v), want 9", n, err)
	}
}
