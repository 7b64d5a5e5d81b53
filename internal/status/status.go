// Package status reads the state of the outbox for on-call: rows by state,
// the oldest undelivered row, and the latest failures with their reasons.
// Every query reads one of the outbox's partial indexes, which hold only
// undelivered, failed or recently delivered rows, so a report stays cheap on
// a table of many million delivered rows.
package status

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediaplatform/relay/internal/msgkey"
)

// Row states as reported.
const (
	StatePending   = "pending"   // not yet handed to the job queue
	StateInFlight  = "in_flight" // handed to the job queue: being sent or waiting for a retry
	StateDelivered = "delivered"
	StateFailed    = "failed" // given up until replayed
)

// countsSQL counts rows by state; the states are defined once, in the
// schema (the views outbox_pending and outbox_undelivered, and
// outbox_row_state). Each subquery is served by a partial index:
// outbox_undelivered_idx (pending rows too, filtered on enqueued_at),
// outbox_delivered_idx, outbox_failed_idx. The last hour is bounded with
// now(), not clock_timestamp(): a volatile bound cannot be an index
// condition, and the count would filter every delivered row (2 s on 10M
// rows, against about 100 ms for the index range of an hour at 10M rows a
// day).
const countsSQL = `
SELECT
    now(),
    (SELECT count(*) FROM outbox_pending),
    (SELECT count(*) FROM outbox_undelivered),
    (SELECT count(*) FROM outbox WHERE delivered_at >= now() - interval '1 hour'),
    (SELECT count(*) FROM outbox WHERE failed_at IS NOT NULL)`

// rowColumns are the columns of a reported row.
const rowColumns = `id, created_at, app_id, event_type, attempts, resends, enqueued_at,
       delivered_at, svix_message_id, failed_at, coalesce(last_error, ''), replayed_at,
       outbox_row_state(outbox)`

// oldestSQL is the oldest row neither delivered nor failed
// (outbox_undelivered_idx).
const oldestSQL = `
SELECT ` + rowColumns + `
  FROM outbox
 WHERE id = (SELECT id FROM outbox_undelivered ORDER BY created_at LIMIT 1)`

// failuresSQL is the latest failed rows (outbox_failed_idx).
const failuresSQL = `
SELECT ` + rowColumns + `
  FROM outbox
 WHERE failed_at IS NOT NULL
 ORDER BY failed_at DESC
 LIMIT $1`

// rowSQL is one row by id.
const rowSQL = `
SELECT ` + rowColumns + `
  FROM outbox
 WHERE id = $1`

// partitionsSQL lists the outbox's partitions (the catalog, no row read).
// A bound from MINVALUE (the first partition of a migrated outbox) reads
// as null.
const partitionsSQL = `
SELECT partition::text, CASE WHEN from_time = '-infinity' THEN NULL ELSE from_time END, to_time,
       rows_estimate, bytes, from_time > now()
  FROM outbox_partitions`

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNotFound is returned for an id no outbox row has.
var ErrNotFound = errors.New("no outbox row with that id")

// Report is the state of the outbox at one moment.
type Report struct {
	At                time.Time `json:"at"`
	Pending           int64     `json:"pending"`
	InFlight          int64     `json:"in_flight"`
	DeliveredLastHour int64     `json:"delivered_last_hour"`
	Failed            int64     `json:"failed"`
	// Oldest is the oldest row neither delivered nor failed; nil when
	// every row is delivered or failed.
	Oldest *Row `json:"oldest_undelivered"`
	// Failures are the latest failed rows, newest first.
	Failures []Row `json:"recent_failures"`
	// Partitions are the outbox's partitions, oldest first.
	Partitions []Partition `json:"partitions"`
}

// Partition is one partition of the outbox.
type Partition struct {
	Name string `json:"name"`
	// From is nil for the first partition of a migrated outbox (it starts
	// at MINVALUE).
	From         *time.Time `json:"from"`
	To           time.Time  `json:"to"`
	RowsEstimate int64      `json:"rows_estimate"` // the planner's, as of the last VACUUM or ANALYZE
	Bytes        int64      `json:"bytes"`         // table, indexes and TOAST
	Ahead        bool       `json:"ahead"`         // starts after now: ready for later rows
}

// Row is one outbox row as on-call sees it.
type Row struct {
	ID        int64     `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	// AgeSeconds is the row's age at the report's time.
	AgeSeconds    float64    `json:"age_seconds"`
	AppID         string     `json:"app_id"`
	EventType     string     `json:"event_type"`
	State         string     `json:"state"`
	Attempts      int        `json:"attempts"`
	Resends       int        `json:"resends"`
	EnqueuedAt    *time.Time `json:"enqueued_at,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
	SvixMessageID string     `json:"svix_message_id,omitempty"`
	FailedAt      *time.Time `json:"failed_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	ReplayedAt    *time.Time `json:"replayed_at,omitempty"`
	// Key is the idempotency key and eventId of the row's message in Svix
	// (what to search for in Svix's dashboard).
	Key string `json:"key"`
}

// Age is the row's age at the report's time.
func (r Row) Age() time.Duration { return time.Duration(r.AgeSeconds * float64(time.Second)) }

// Options tunes a report.
type Options struct {
	// Failures is how many of the latest failed rows to list; negative
	// lists none. Default 10.
	Failures int
}

// Read reports the state of the outbox.
func Read(ctx context.Context, db Querier, opts Options) (Report, error) {
	opts.Failures = cmp.Or(opts.Failures, 10)
	rep := Report{Failures: []Row{}, Partitions: []Partition{}}
	var undelivered int64
	if err := db.QueryRow(ctx, countsSQL).Scan(&rep.At, &rep.Pending, &undelivered, &rep.DeliveredLastHour, &rep.Failed); err != nil {
		return Report{}, fmt.Errorf("count outbox rows: %w", err)
	}
	rep.InFlight = undelivered - rep.Pending

	oldest, err := queryRows(ctx, db, rep.At, oldestSQL)
	if err != nil {
		return Report{}, fmt.Errorf("read the oldest undelivered row: %w", err)
	}
	if len(oldest) > 0 {
		rep.Oldest = &oldest[0]
	}
	if opts.Failures > 0 {
		failures, err := queryRows(ctx, db, rep.At, failuresSQL, opts.Failures)
		if err != nil {
			return Report{}, fmt.Errorf("read failed rows: %w", err)
		}
		rep.Failures = append(rep.Failures, failures...)
	}
	rows, err := db.Query(ctx, partitionsSQL)
	if err != nil {
		return Report{}, fmt.Errorf("list outbox partitions: %w", err)
	}
	parts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Partition, error) {
		var p Partition
		err := row.Scan(&p.Name, &p.From, &p.To, &p.RowsEstimate, &p.Bytes, &p.Ahead)
		return p, err
	})
	if err != nil {
		return Report{}, fmt.Errorf("list outbox partitions: %w", err)
	}
	rep.Partitions = append(rep.Partitions, parts...)
	return rep, nil
}

// Get reads one row, or returns ErrNotFound.
func Get(ctx context.Context, db Querier, id int64) (Row, error) {
	rows, err := queryRows(ctx, db, time.Now(), rowSQL, id)
	if err != nil {
		return Row{}, fmt.Errorf("read outbox row %d: %w", id, err)
	}
	if len(rows) == 0 {
		return Row{}, fmt.Errorf("outbox row %d: %w", id, ErrNotFound)
	}
	return rows[0], nil
}

func queryRows(ctx context.Context, db Querier, now time.Time, sql string, args ...any) ([]Row, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Row, error) {
		var r Row
		var msgID *string
		err := row.Scan(&r.ID, &r.CreatedAt, &r.AppID, &r.EventType, &r.Attempts, &r.Resends, &r.EnqueuedAt,
			&r.DeliveredAt, &msgID, &r.FailedAt, &r.LastError, &r.ReplayedAt, &r.State)
		if msgID != nil {
			r.SvixMessageID = *msgID
		}
		return r, err
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		r := &out[i]
		r.AgeSeconds = max(now.Sub(r.CreatedAt).Seconds(), 0)
		r.Key = msgkey.Format(r.ID, r.CreatedAt, r.Resends)
	}
	return out, nil
}
