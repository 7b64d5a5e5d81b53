package schema

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pressly/goose/v3"
)

// Migration 12 is Go, not SQL: it replaces an index of the partitioned
// outbox without blocking producers, which needs CREATE INDEX
// CONCURRENTLY on each partition in turn (PostgreSQL builds an index on a
// partitioned table only with every partition locked against writes for
// the whole build, and refuses CONCURRENTLY inside a transaction, a
// function or a procedure, so no SQL migration can loop over the
// partitions).
//
// outbox_commit_seq_idx becomes partial, WHERE commit_seq IS NOT NULL: a
// row enters it when a numbering step gives it its place, no longer at
// INSERT with a NULL that nothing reads, so a producer's INSERT writes 4
// index entries instead of 5. Every statement that reads it compares
// commit_seq (which implies IS NOT NULL, so the planner may use a partial
// index), those of relays from before this migration too.
//
// outbox_key_idx stays whole, though its NULL entries are as useless:
// the successor probe of relays from before this migration names no
// commit_seq condition, and would scan the current partition for every
// key while they still run (a rolling upgrade migrates first). Making it
// partial as well measured no faster in backlog drains (realistic-0ms,
// three alternating pairs), and a probe that names commit_seq IS NOT NULL
// is planned through this partial index when the statistics were taken
// while every row was unnumbered (dispatch's
// TestPlansAfterAnalyzeOfUnnumberedRows).
const partialIndexesVersion = 12

// goMigrationNames names the Go migrations in reports (goose knows them by
// version only).
var goMigrationNames = map[int64]string{partialIndexesVersion: "partial_commit_seq_index"}

// goMigrations are the outbox migrations written in Go.
func goMigrations() []*goose.Migration {
	return []*goose.Migration{
		goose.NewGoMigration(partialIndexesVersion,
			&goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error { return swapIndexes(ctx, db, partialIndexes, smallOutbox) }},
			&goose.GoFunc{RunDB: func(ctx context.Context, db *sql.DB) error { return swapIndexes(ctx, db, fullIndexes, smallOutbox) }}),
	}
}

// outboxIndex is the definition of one index of the outbox, as CREATE
// INDEX takes it after ON <table>.
type outboxIndex struct {
	suffix     string // its name after "outbox" (the partitions' after their own name)
	unique     bool
	definition string // columns and predicate
}

var (
	partialIndexes = []outboxIndex{{"_commit_seq_idx", true, `(commit_seq, partition_at) WHERE commit_seq IS NOT NULL`}}
	fullIndexes    = []outboxIndex{{"_commit_seq_idx", true, `(commit_seq, partition_at)`}}
)

// smallOutbox is the size under which swapIndexes builds an index in a
// plain transaction (well under a second: producers wait that long)
// instead of CONCURRENTLY partition by partition (which also waits for
// every transaction open in the database, producers' or not, to end).
const smallOutbox = 64 << 20

// swapIndexes replaces each of the outbox's indexes named in defs by one
// of that definition, online. On an outbox under small bytes it builds the new index
// and puts it in place in one short transaction. On a larger one, the
// new index is made on the partitioned table alone (ON ONLY, not yet
// valid), then on each partition CONCURRENTLY and attached, which makes
// it valid (a partition made meanwhile gets its copy as it is attached);
// then, under a short lock, the old index goes and the new one takes its
// name. Every lock is waited for at most 5 s at a time, for up to two
// minutes. Run again after a failure, it picks up where it stopped.
func swapIndexes(ctx context.Context, db *sql.DB, defs []outboxIndex, small int64) error {
	var size int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint
	                                     FROM pg_inherits WHERE inhparent = 'outbox'::regclass`).Scan(&size); err != nil {
		return fmt.Errorf("read the outbox's size: %w", err)
	}
	for _, d := range defs {
		var build string
		if size < small {
			build = fmt.Sprintf(`DROP INDEX IF EXISTS outbox%[1]s_new; CREATE %[2]sINDEX outbox%[1]s_new ON outbox %[3]s`, d.suffix, d.uniqueSQL(), d.definition)
		} else if err := buildIndex(ctx, db, d); err != nil {
			return err
		}
		if err := retryLocked(ctx, func() error { return renameIndex(ctx, db, build, d) }); err != nil {
			return fmt.Errorf("put outbox%s in place: %w", d.suffix, err)
		}
	}
	return nil
}

func (d outboxIndex) uniqueSQL() string {
	if d.unique {
		return "UNIQUE "
	}
	return ""
}

// buildIndex makes outbox<suffix>_new, valid, on every partition.
func buildIndex(ctx context.Context, db *sql.DB, d outboxIndex) error {
	unique := d.uniqueSQL()
	parent := "outbox" + d.suffix + "_new"
	if _, err := db.ExecContext(ctx, fmt.Sprintf(`CREATE %sINDEX IF NOT EXISTS %s ON ONLY outbox %s`, unique, parent, d.definition)); err != nil {
		return fmt.Errorf("create %s on the outbox: %w", parent, err)
	}
	// The partitions without their copy yet, and what is left of an
	// earlier attempt on each (an index of the name, attached or not,
	// valid or not).
	const missingSQL = `
SELECT p.relname, c.relname IS NOT NULL, coalesce(x.indisvalid, false)
  FROM pg_inherits h
  JOIN pg_class p ON p.oid = h.inhrelid
  LEFT JOIN pg_class c ON c.relname = p.relname || $2 AND c.relnamespace = p.relnamespace
  LEFT JOIN pg_index x ON x.indexrelid = c.oid
 WHERE h.inhparent = 'outbox'::regclass
   AND NOT EXISTS (SELECT 1 FROM pg_inherits a JOIN pg_index i ON i.indexrelid = a.inhrelid
                    WHERE a.inhparent = $1::regclass AND i.indrelid = p.oid)
 ORDER BY p.relname`
	rows, err := db.QueryContext(ctx, missingSQL, parent, d.suffix+"_new")
	if err != nil {
		return fmt.Errorf("list partitions without %s: %w", parent, err)
	}
	type partition struct {
		name          string
		exists, valid bool
	}
	var todo []partition
	for rows.Next() {
		var p partition
		if err := rows.Scan(&p.name, &p.exists, &p.valid); err != nil {
			rows.Close()
			return fmt.Errorf("list partitions without %s: %w", parent, err)
		}
		todo = append(todo, p)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("list partitions without %s: %w", parent, err)
	}
	for _, p := range todo {
		child := p.name + d.suffix + "_new"
		if p.exists && !p.valid {
			// A build that failed or was cancelled leaves an invalid index.
			if _, err := db.ExecContext(ctx, `DROP INDEX CONCURRENTLY IF EXISTS `+quoteIdent(child)); err != nil {
				return fmt.Errorf("drop the invalid %s left by an earlier attempt: %w", child, err)
			}
		}
		create := fmt.Sprintf(`CREATE %sINDEX CONCURRENTLY IF NOT EXISTS %s ON %s %s`, unique, quoteIdent(child), quoteIdent(p.name), d.definition)
		if _, err := db.ExecContext(ctx, create); err != nil {
			return fmt.Errorf("create %s: %w", child, err)
		}
		if _, err := db.ExecContext(ctx, fmt.Sprintf(`ALTER INDEX %s ATTACH PARTITION %s`, parent, quoteIdent(child))); err != nil {
			return fmt.Errorf("attach %s to %s: %w", child, parent, err)
		}
	}
	var valid bool
	if err := db.QueryRowContext(ctx, `SELECT indisvalid FROM pg_index WHERE indexrelid = $1::regclass`, parent).Scan(&valid); err != nil {
		return fmt.Errorf("check %s: %w", parent, err)
	}
	if !valid {
		return fmt.Errorf("%s is not valid after every partition got its copy: a partition was attached meanwhile without one; run the migration again", parent)
	}
	return nil
}

// renameIndex runs build (if any), drops outbox<suffix> and gives
// outbox<suffix>_new its name, on the outbox and on each partition, in
// one short transaction.
func renameIndex(ctx context.Context, db *sql.DB, build string, d outboxIndex) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	if _, err := tx.ExecContext(ctx, `SET LOCAL lock_timeout = '5s'`); err != nil {
		return err
	}
	if build != "" {
		if _, err := tx.ExecContext(ctx, build); err != nil {
			return err
		}
	}
	const renameSQL = `
DO $$
DECLARE
    suffix text := %s;
    idx    record;
BEGIN
    LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;
    EXECUTE format('DROP INDEX IF EXISTS %%I', 'outbox' || suffix);
    EXECUTE format('ALTER INDEX %%I RENAME TO %%I', 'outbox' || suffix || '_new', 'outbox' || suffix);
    FOR idx IN
        SELECT c.relname AS child, p.relname AS partition
          FROM pg_inherits h
          JOIN pg_class c ON c.oid = h.inhrelid
          JOIN pg_index x ON x.indexrelid = c.oid
          JOIN pg_class p ON p.oid = x.indrelid
         WHERE h.inhparent = ('outbox' || suffix)::regclass
    LOOP
        IF idx.child <> idx.partition || suffix THEN
            EXECUTE format('ALTER INDEX %%I RENAME TO %%I', idx.child, idx.partition || suffix);
        END IF;
    END LOOP;
END
$$`
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(renameSQL, quoteLiteral(d.suffix))); err != nil {
		return err
	}
	return tx.Commit()
}

// retryLocked runs fn until it does not fail on its lock_timeout (SQLSTATE
// 55P03), for up to two minutes: the lock it needs waits for every
// transaction on the outbox, and while it waits, it holds up new ones.
func retryLocked(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := fn()
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55P03" || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteLiteral quotes a PostgreSQL string literal.
func quoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}
