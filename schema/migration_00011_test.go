package schema_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// insertTyped writes one valid outbox row of the given type.
const insertTyped = `INSERT INTO outbox (app_id, event_type, data)
                     VALUES ('acme', $1, '{"entity_id": "c1", "asset_id": "a1"}')`

// refused fails the test unless err is PostgreSQL's refusal with SQLSTATE
// code and constraint (either left empty: any).
func refused(t *testing.T, err error, code, constraint string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || (code != "" && pgErr.Code != code) || (constraint != "" && pgErr.ConstraintName != constraint) {
		t.Fatalf("err = %v, want a refusal with SQLSTATE %q, constraint %q", err, code, constraint)
	}
}

// outboxForeignKeys counts the foreign keys of the outbox table.
func outboxForeignKeys(ctx context.Context, t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_constraint WHERE conrelid = 'outbox'::regclass AND contype = 'f'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestEventTypeGuard covers what the outbox's foreign key to the catalog
// did, now that a trigger on the catalog does it: a type rows name cannot
// be deleted, renamed or truncated away; a type no row names can; and an
// unknown type is still refused at INSERT by validation.
func TestEventTypeGuard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	inUse := func(t *testing.T, err error) {
		t.Helper()
		refused(t, err, "23503", "event_type_in_use")
	}

	t.Run("NoForeignKeyOnTheOutbox", func(t *testing.T) {
		t.Parallel()
		if n := outboxForeignKeys(ctx, t, pgtest.Pool(t)); n != 0 {
			t.Fatalf("the outbox has %d foreign keys, want 0 (each producer would lock a catalog row)", n)
		}
	})

	t.Run("UnknownTypeStillRefused", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		_, err := pool.Exec(ctx, insertTyped, "cut.exploded")
		refused(t, err, "", "event_type_known")
	})

	t.Run("TypeInUse", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		if _, err := pool.Exec(ctx, insertTyped, "cut.failed"); err != nil {
			t.Fatal(err)
		}
		_, err := pool.Exec(ctx, `DELETE FROM outbox_event_type WHERE name = 'cut.failed'`)
		inUse(t, err)
		_, err = pool.Exec(ctx, `UPDATE outbox_event_type SET name = 'cut.broke' WHERE name = 'cut.failed'`)
		inUse(t, err)
		_, err = pool.Exec(ctx, `TRUNCATE outbox_event_type`)
		inUse(t, err)
		if _, err := pool.Exec(ctx, `UPDATE outbox_event_type SET description = 'A cut broke.' WHERE name = 'cut.failed'`); err != nil {
			t.Fatalf("a new description of a type in use: %v", err)
		}
	})

	t.Run("TypeNotInUse", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		if _, err := pool.Exec(ctx, insertTyped, "cut.completed"); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, `UPDATE outbox_event_type SET name = 'render.aborted' WHERE name = 'render.cancelled'`); err != nil {
			t.Fatalf("rename of a type no row names: %v", err)
		}
		if _, err := pool.Exec(ctx, `DELETE FROM outbox_event_type WHERE name = 'cut.failed'`); err != nil {
			t.Fatalf("delete of a type no row names: %v", err)
		}
	})

	// A producer's row not yet committed when the type is deleted: the
	// delete waits for it and then refuses (without the guard's lock it
	// would not see the row and would succeed).
	t.Run("DeleteWaitsForAnOpenProducer", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, insertTyped, "cut.failed"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := pool.Exec(ctx, `DELETE FROM outbox_event_type WHERE name = 'cut.failed'`)
			done <- err
		}()
		waitForLockWait(ctx, t, pool, tx, done)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		inUse(t, <-done)
	})

	// The other order: a type deleted (not yet committed) holds producers
	// of any type; once it commits, a row of the deleted type is refused.
	t.Run("ProducerWaitsForADelete", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, `DELETE FROM outbox_event_type WHERE name = 'cut.failed'`); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := pool.Exec(ctx, insertTyped, "cut.failed")
			done <- err
		}()
		waitForLockWait(ctx, t, pool, tx, done)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		refused(t, <-done, "", "event_type_known") // the insert, once the delete committed
	})
}

// waitForLockWait returns once a session waits on a lock the transaction
// tx holds; it fails the test if the statement in done ends first.
func waitForLockWait(ctx context.Context, t *testing.T, pool *pgxpool.Pool, tx pgx.Tx, done <-chan error) {
	t.Helper()
	var holder int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	for {
		var waiting bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid)))`,
			holder).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the statement ended without waiting: err = %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestMigration00011 takes an outbox with rows from 00010 to 00011 (the
// foreign key goes, the guard comes) and back (the key returns and holds).
func TestMigration00011(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewSchema(t).Pool(t)
	provider := stepper(t, pool)
	if _, err := provider.UpTo(ctx, 10); err != nil {
		t.Fatalf("migrate to 10: %v", err)
	}
	if _, err := pool.Exec(ctx, insertTyped, "cut.failed"); err != nil {
		t.Fatal(err)
	}
	keys := func() int { t.Helper(); return outboxForeignKeys(ctx, t, pool) }
	if n := keys(); n != 1 {
		t.Fatalf("foreign keys at 10: %d, want 1", n)
	}
	if _, err := provider.UpTo(ctx, 11); err != nil {
		t.Fatalf("migrate to 11: %v", err)
	}
	if n := keys(); n != 0 {
		t.Fatalf("foreign keys at 11: %d, want 0", n)
	}
	_, err := pool.Exec(ctx, `DELETE FROM outbox_event_type WHERE name = 'cut.failed'`)
	refused(t, err, "", "event_type_in_use") // at 11

	if _, err := provider.DownTo(ctx, 10); err != nil {
		t.Fatalf("down to 10: %v", err)
	}
	if n := keys(); n != 1 {
		t.Fatalf("foreign keys after down: %d, want 1", n)
	}
	_, err = pool.Exec(ctx, `DELETE FROM outbox_event_type WHERE name = 'cut.failed'`)
	refused(t, err, "23503", "") // after down: the key's refusal
	if _, err := provider.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if n := keys(); n != 0 {
		t.Fatalf("foreign keys after up again: %d, want 0", n)
	}
}
