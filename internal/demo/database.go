package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// deliveredSQL reads the relay's outcome of rows.
const deliveredSQL = `
SELECT id, svix_message_id FROM outbox
 WHERE id = ANY($1) AND delivered_at IS NOT NULL AND failed_at IS NULL AND svix_message_id IS NOT NULL`

// waitMarked waits until the relay has recorded every expected row as
// delivered, with the message id the receiver saw.
func waitMarked(ctx context.Context, pool *pgxpool.Pool, r *Report, deadline <-chan time.Time) error {
	ids := make([]int64, len(r.Expected))
	for i, e := range r.Expected {
		ids[i] = e.RowID
	}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, err := pool.Query(ctx, deliveredSQL, ids)
		if err != nil {
			return fmt.Errorf("read outbox outcomes: %w", err)
		}
		marked := make(map[int64]string)
		var id int64
		var msgID string
		_, err = pgx.ForEachRow(rows, []any{&id, &msgID}, func() error { marked[id] = msgID; return nil })
		if err != nil {
			return fmt.Errorf("read outbox outcomes: %w", err)
		}
		var unmarked []string
		for _, e := range r.Expected {
			rc, _ := r.Verified(e.RowID)
			if got, ok := marked[e.RowID]; !ok || got != rc.SvixID {
				unmarked = append(unmarked, fmt.Sprintf("row %d (svix_message_id %q, delivered %q)", e.RowID, got, rc.SvixID))
			}
		}
		if len(unmarked) == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			return fmt.Errorf("outbox rows not marked delivered with the delivered message id: %s", strings.Join(unmarked, ", "))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// openPool opens a pool on dbURL whose connections use schemaName, when
// given, as their search_path.
func openPool(ctx context.Context, dbURL, schemaName string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	cfg.MaxConns = 20 // the relay (River, its listener, the feeder, workers) and the demo's writes
	if schemaName != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schemaName}.Sanitize() // keeps case and quotes
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// prepareSchema creates schemaName when given and absent, and returns the
// schema the connections use.
func prepareSchema(ctx context.Context, pool *pgxpool.Pool, schemaName string) (string, error) {
	if schemaName != "" {
		_, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schemaName}.Sanitize())
		var pgErr *pgconn.PgError
		// Two demos creating it at once: one of them gets a duplicate error.
		if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "42P06" || pgErr.Code == "23505")) {
			return "", fmt.Errorf("create schema %s: %w", schemaName, err)
		}
	}
	var current *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&current); err != nil {
		return "", fmt.Errorf("read current schema: %w", err)
	}
	if current == nil {
		return "", errors.New("no schema of the connection's search_path exists: create one, or name one to create")
	}
	return *current, nil
}

// lockSchema takes a session advisory lock so that two demos never drain
// one schema's outbox into two dev servers; the returned func releases it.
func lockSchema(ctx context.Context, pool *pgxpool.Pool, schemaName string) (func(), error) {
	const lockSQL = `SELECT pg_try_advisory_lock(hashtextextended('relay.demo:' || $1, 0))`
	const unlockSQL = `SELECT pg_advisory_unlock(hashtextextended('relay.demo:' || $1, 0))`
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection for the demo lock: %w", err)
	}
	var locked bool
	if err := conn.QueryRow(ctx, lockSQL, schemaName).Scan(&locked); err != nil {
		conn.Release()
		return nil, fmt.Errorf("take the demo lock on schema %s: %w", schemaName, err)
	}
	if !locked {
		conn.Release()
		return nil, fmt.Errorf("another relay demo is running on schema %s: stop it or choose another schema", schemaName)
	}
	return func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), unlockSQL, schemaName); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx)) // the server drops the lock with the session
		}
		conn.Release()
	}, nil
}

// newTag returns a short random tag that keeps one run's ids apart from
// another's.
func newTag() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// qualified names a table of schemaName, quoting only when needed.
func qualified(schemaName, table string) string {
	if plainIdent.MatchString(schemaName) {
		return schemaName + "." + table
	}
	return pgx.Identifier{schemaName, table}.Sanitize()
}
