// Package pooler finds out whether a connection pooler (PgBouncer,
// pgcat, Odyssey, a cloud proxy) sits between a client and PostgreSQL, and
// whether it shares server connections between clients (transaction or
// statement pooling), so that a command can refuse what needs a session of
// its own (a session advisory lock, LISTEN) and avoid named prepared
// statements, which PgBouncer before 1.21 cannot carry across transactions.
package pooler

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Report is what Probe found.
type Report struct {
	// Pooler is true when the process id the connection announced at
	// startup (BackendKeyData) is not the server backend's
	// (pg_backend_pid()). PostgreSQL and TCP proxies pass the backend's
	// through; a pooler answers with its own, since its clients have no
	// backend of their own to cancel.
	Pooler bool
	// Shared is true when two client connections open at once were served
	// by one server connection: transaction or statement pooling, where
	// session state (LISTEN, session advisory locks, SET, named prepared
	// statements) does not survive from one transaction to the next. False
	// means it was not seen, which does not prove session pooling: a busy
	// pooler may hand the second client another server connection.
	Shared bool
	// SearchPath is the session's search_path as the server reports it.
	SearchPath string
}

// Probe opens two connections with cfg, one after the other while the
// first stays open, and runs one simple-protocol query on each (no
// prepared statement is left behind on a shared server connection).
func Probe(ctx context.Context, cfg *pgx.ConnConfig) (Report, error) {
	cfg = cfg.Copy()
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	first, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return Report{}, fmt.Errorf("probe for a connection pooler: %w", err)
	}
	defer first.Close(context.WithoutCancel(ctx))
	var (
		rep        Report
		firstPID   uint32
		secondPID  uint32
		searchPath string
	)
	if err := first.QueryRow(ctx, `SELECT pg_backend_pid(), current_setting('search_path')`).Scan(&firstPID, &searchPath); err != nil {
		return Report{}, fmt.Errorf("probe for a connection pooler: %w", err)
	}
	rep.SearchPath = searchPath
	rep.Pooler = first.PgConn().PID() != firstPID

	second, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return Report{}, fmt.Errorf("probe for a connection pooler: %w", err)
	}
	defer second.Close(context.WithoutCancel(ctx))
	if err := second.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&secondPID); err != nil {
		return Report{}, fmt.Errorf("probe for a connection pooler: %w", err)
	}
	rep.Shared = secondPID == firstPID
	rep.Pooler = rep.Pooler || rep.Shared || second.PgConn().PID() != secondPID
	return rep, nil
}

// SameSearchPath reports whether the search_path a client asked for
// (want, as written in a connection URL) is the one the server reports
// (got), ignoring spaces and double quotes.
func SameSearchPath(want, got string) bool {
	norm := func(s string) string {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = strings.Trim(strings.TrimSpace(p), `"`)
		}
		return strings.Join(parts, ",")
	}
	return norm(want) == norm(got)
}
