// Package replay hands outbox rows back to the relay, through the
// database's own outbox_replay function so that SQL and `relay replay`
// behave the same:
//
//   - a row Svix never accepted (failed, pending or in flight) is sent again
//     under its own idempotency key, so Svix can never hold two messages
//     for it;
//   - a delivered row is left alone unless the resend is forced; then it is
//     sent again as a new message, under the row key plus a resend counter
//     (msgkey.Format with resends + 1), and the resend is recorded on the row
//     (resends, replayed_at).
//
// Rows are locked while they are looked at and replayed, in batches of at
// most BatchSize rows per transaction, so what is reported is what was done.
package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediaplatform/relay/internal/msgkey"
	"github.com/mediaplatform/relay/internal/status"
)

// BatchSize is the most rows replayed per transaction.
const BatchSize = 500

// selectSQL lists the ids a selection matches: failed rows when $1, that
// failed at or after $3 (if set); delivered rows when $2, delivered at or
// after $6 (if set); of event type $4 and app $5 (if set). Each half walks
// its partial index. The time bounds are on when a row failed or was
// delivered, never on when it was written: a row that gave up at max age
// after an outage was written days before it failed.
const selectSQL = `
SELECT id FROM outbox
 WHERE $1::boolean
   AND failed_at >= coalesce($3::timestamptz, '-infinity')
   AND ($4::text IS NULL OR event_type = $4)
   AND ($5::text IS NULL OR app_id = $5)
UNION ALL
SELECT id FROM outbox
 WHERE $2::boolean
   AND delivered_at >= coalesce($6::timestamptz, '-infinity')
   AND ($4::text IS NULL OR event_type = $4)
   AND ($5::text IS NULL OR app_id = $5)
 ORDER BY 1`

// peekSQL reads the rows of a batch; lockSQL also locks them until the
// batch commits, so their state cannot change under the replay.
const (
	peekSQL = `
SELECT id, created_at, app_id, event_type, resends,
       enqueued_at IS NOT NULL, delivered_at IS NOT NULL, failed_at IS NOT NULL,
       outbox_row_state(outbox)
  FROM outbox
 WHERE id = ANY($1::bigint[])
 ORDER BY id`
	lockSQL = peekSQL + `
   FOR UPDATE`
)

// replaySQL runs the database's replay on a batch of locked rows in one
// statement; force re-sends delivered rows (it is ignored for others).
const replaySQL = `SELECT count(*) FILTER (WHERE outbox_replay(id, force => $2)) FROM unnest($1::bigint[]) AS id`

// DB is what a replay needs: a pool (or a connection).
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Action is what a replay does, or would do, to a row.
type Action string

const (
	// Requeue: the row was never accepted by Svix; it is sent again under
	// its own key.
	Requeue Action = "requeue"
	// Resend: the row was delivered and the resend is forced; it is sent
	// again as a new message under a new key.
	Resend Action = "resend"
	// Skip: the row was delivered and the resend is not forced (or it no
	// longer matches the selection); nothing happens.
	Skip Action = "skip"
)

// Item is one row of a replay.
type Item struct {
	ID        int64  `json:"id"`
	AppID     string `json:"app_id"`
	EventType string `json:"event_type"`
	// State is the row's state before the replay (status.StatePending, ...).
	State  string `json:"state"`
	Action Action `json:"action"`
	// Key is the idempotency key and eventId of the row's next message:
	// the row's own key for Requeue, a new one for Resend.
	Key string `json:"key"`
}

// Options say how to replay.
type Options struct {
	// Force re-sends delivered rows as new messages.
	Force bool
	// DryRun reports what would happen and changes nothing.
	DryRun bool
}

// Selection picks rows to replay. Failed and Delivered say which rows;
// the rest narrow them (zero values do not).
type Selection struct {
	Failed    bool // rows failed and not replayed
	Delivered bool // rows Svix accepted (resent only with Options.Force)
	// FailedSince narrows the failed rows to those that failed at or
	// after it (failed_at), however long before they were written.
	FailedSince time.Time
	// DeliveredSince narrows the delivered rows to those delivered at or
	// after it (delivered_at).
	DeliveredSince time.Time
	EventType      string
	AppID          string
}

// Summary counts the actions of a selection.
type Summary struct {
	Requeued int `json:"requeued"`
	Resent   int `json:"resent"`
	Skipped  int `json:"skipped"`
}

// One replays the row with id, or returns status.ErrNotFound.
func One(ctx context.Context, db DB, id int64, opts Options) (Item, error) {
	var item Item
	found := false
	err := batch(ctx, db, []int64{id}, opts, nil, func(it Item) error {
		item, found = it, true
		return nil
	})
	if err != nil {
		return Item{}, err
	}
	if !found {
		return Item{}, fmt.Errorf("outbox row %d: %w", id, status.ErrNotFound)
	}
	return item, nil
}

// Select replays the rows sel matches, oldest id first, calling each for
// every row with what was (or, with DryRun, would be) done. It stops at
// the first error, from the database or from each; rows in batches already
// committed stay replayed.
func Select(ctx context.Context, db DB, sel Selection, opts Options, each func(Item) error) (Summary, error) {
	var sum Summary
	if !sel.Failed && !sel.Delivered {
		return sum, errors.New("replay selection: choose failed rows, delivered rows or both")
	}
	rows, err := db.Query(ctx, selectSQL, sel.Failed, sel.Delivered, nullTime(sel.FailedSince), nullString(sel.EventType), nullString(sel.AppID), nullTime(sel.DeliveredSince))
	if err != nil {
		return sum, fmt.Errorf("select rows to replay: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return sum, fmt.Errorf("select rows to replay: %w", err)
	}
	// A row may have changed between the selection and its lock: act only
	// on rows still in a selected state.
	selected := func(s rowState) bool {
		return s.failed && sel.Failed || s.delivered && sel.Delivered
	}
	count := func(it Item) error {
		switch it.Action {
		case Requeue:
			sum.Requeued++
		case Resend:
			sum.Resent++
		case Skip:
			sum.Skipped++
		}
		return each(it)
	}
	for chunk := range slices.Chunk(ids, BatchSize) {
		if err := batch(ctx, db, chunk, opts, selected, count); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

type rowState struct {
	enqueued, delivered, failed bool
	name                        string // outbox_row_state: status.StatePending, ...
}

// batch replays ids in one transaction; rows that selected (when not nil)
// rejects are skipped.
func batch(ctx context.Context, db DB, ids []int64, opts Options, selected func(rowState) bool, each func(Item) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin replay: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after commit

	sql := lockSQL
	if opts.DryRun {
		sql = peekSQL
	}
	rows, err := tx.Query(ctx, sql, ids)
	if err != nil {
		return fmt.Errorf("read rows to replay: %w", err)
	}
	type row struct {
		id       int64
		created  time.Time
		app, typ string
		resends  int
		state    rowState
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.id, &x.created, &x.app, &x.typ, &x.resends, &x.state.enqueued, &x.state.delivered, &x.state.failed, &x.state.name)
		return x, err
	})
	if err != nil {
		return fmt.Errorf("read rows to replay: %w", err)
	}

	items := make([]Item, 0, len(got))
	var replay []int64
	for _, x := range got {
		it := Item{ID: x.id, AppID: x.app, EventType: x.typ, State: x.state.name, Key: msgkey.Format(x.id, x.created, x.resends)}
		switch {
		case selected != nil && !selected(x.state):
			it.Action = Skip
		case !x.state.delivered:
			it.Action = Requeue
		case opts.Force:
			it.Action = Resend
			it.Key = msgkey.Format(x.id, x.created, x.resends+1)
		default:
			it.Action = Skip
		}
		if it.Action != Skip {
			replay = append(replay, x.id)
		}
		items = append(items, it)
	}
	if !opts.DryRun && len(replay) > 0 {
		var n int
		if err := tx.QueryRow(ctx, replaySQL, replay, opts.Force).Scan(&n); err != nil {
			return fmt.Errorf("replay %d outbox rows: %w", len(replay), err)
		}
		if n != len(replay) {
			return fmt.Errorf("replay outbox rows: %d of %d still existed", n, len(replay))
		}
	}
	if !opts.DryRun {
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit replay: %w", err)
		}
	}
	for _, it := range items {
		if err := each(it); err != nil {
			return err
		}
	}
	return nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
