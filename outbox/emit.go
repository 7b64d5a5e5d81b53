package outbox

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Executor runs queries: a pgx.Tx (the usual case: the producer's own
// transaction), a *pgx.Conn, a *pgxpool.Conn or a *pgxpool.Pool (each
// statement then commits on its own).
type Executor interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const insertSQL = `INSERT INTO outbox (app_id, event_type, data) VALUES ($1, $2, $3::jsonb) RETURNING id`

// insertManySQL inserts rows in argument order, so ascending ids match it.
const insertManySQL = `
INSERT INTO outbox (app_id, event_type, data)
SELECT e.app_id, e.event_type, e.data
  FROM unnest($1::text[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS e (app_id, event_type, data, ord)
 ORDER BY e.ord
RETURNING id`

// Emit writes ev to the outbox through tx and returns its row id. The event
// is delivered when, and only if, tx commits. A refused event is a
// *ValidationError, from the checks of Validate or from the database.
//
// The database's catalog (outbox_event_type) decides which event types
// exist: a type this package does not know yet (added by a migration) is
// written when the database knows it, and refused by the database
// (event_type_known) when it does not. For such a type, data's generic
// rules are checked here first, so a row wrong on two counts may be refused
// for its data rather than its type.
func Emit(ctx context.Context, tx Executor, ev Event) (int64, error) {
	if err := validate(ev, true); err != nil {
		return 0, err
	}
	var id int64
	// data goes as a string, cast by the SQL: a []byte would be sent as
	// bytea in pgx's exec and simple protocol modes, which producers behind
	// PgBouncer in transaction pooling mode use.
	if err := tx.QueryRow(ctx, insertSQL, ev.AppID, string(ev.Type), string(ev.Data)).Scan(&id); err != nil {
		return 0, fmt.Errorf("insert outbox row: %w", fromPgError(err))
	}
	return id, nil
}

// EmitBatch writes evs in one statement and returns their row ids in the
// order of evs; event types are judged as by Emit. Nothing is written when any event is refused; the error
// names the event's index.
func EmitBatch(ctx context.Context, tx Executor, evs []Event) ([]int64, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	apps := make([]string, len(evs))
	types := make([]string, len(evs))
	datas := make([]string, len(evs)) // strings, as in Emit

	for i, ev := range evs {
		if err := validate(ev, true); err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		apps[i], types[i], datas[i] = ev.AppID, string(ev.Type), string(ev.Data)
	}
	rows, err := tx.Query(ctx, insertManySQL, apps, types, datas)
	if err != nil {
		return nil, fmt.Errorf("insert outbox rows: %w", fromPgError(err))
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("insert outbox rows: %w", fromPgError(err))
	}
	if len(ids) != len(evs) {
		return nil, fmt.Errorf("insert outbox rows: inserted %d of %d", len(ids), len(evs))
	}
	slices.Sort(ids)
	return ids, nil
}
