package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/outbox"
)

// The demo's product table: a product service's renders, whose state
// changes the events announce.
const createRendersSQL = `
CREATE TABLE IF NOT EXISTS renders (
    id         text PRIMARY KEY,
    account_id text NOT NULL,
    asset_id   text NOT NULL,
    state      text NOT NULL DEFAULT 'running',
    updated_at timestamptz NOT NULL DEFAULT now()
)`

const (
	insertRenderSQL = `INSERT INTO renders (id, account_id, asset_id) VALUES ($1, $2, $3)`
	finishRenderSQL = `UPDATE renders SET state = $2, updated_at = now() WHERE id = $1 AND state = 'running'`
	renderStateSQL  = `SELECT state FROM renders WHERE id = $1`
	// insertOutboxSQL is the producer contract's plain-SQL insert (README).
	insertOutboxSQL = `INSERT INTO outbox (app_id, event_type, data) VALUES ($1, $2, $3::jsonb) RETURNING id`
	rowExistsSQL    = `SELECT EXISTS (SELECT 1 FROM outbox WHERE id = $1)`
)

// Emitted is an outbox row the demo wrote.
type Emitted struct {
	RowID    int64
	App      string
	Type     outbox.EventType
	EntityID string
	Data     json.RawMessage
	// How says how the row was written: "go tx", "plain SQL", "go batch".
	How string
	// CommittedAt is when the commit returned; zero for a rolled-back row.
	CommittedAt time.Time
}

// script is the demo's sequence of writes, with ids unique to one run (tag)
// so that runs on one schema never mix.
type script struct {
	app, otherApp               string
	renderDone, renderCancelled string // render ids
	asset                       string // the asset of both renders
	plain, invalid              outbox.Event
	batch                       []outbox.Event
	// faults are the receiver's simulated failures, by data.entity_id.
	faults map[string]Fault
}

// produced is what the script wrote.
type produced struct {
	expected   []Emitted // committed rows, each to be delivered once
	rolledBack Emitted   // written in a transaction that rolled back
	refused    error     // the database's refusal of the invalid insert
}

func newScript(tag string) script {
	id := func(kind string, n int) string { return fmt.Sprintf("%s_%s_%d", kind, tag, n) }
	a, b := Apps[0], Apps[1]
	s := script{
		app: a, otherApp: b,
		renderDone: id("render", 1), renderCancelled: id("render", 2), asset: id("asset", 1),
	}
	s.plain = outbox.Event{AppID: a, Type: outbox.TypeAssetReady, Data: mustJSON(map[string]any{
		"entity_id": id("asset", 2), "asset_id": id("asset", 2), "previous_state": "processing",
		// An extra key with an integer beyond float64's exact range: it must
		// arrive digit for digit.
		"frames": json.Number("9007199254740993"),
	})}
	s.invalid = outbox.Event{AppID: a, Type: outbox.TypeAssetReady, Data: mustJSON(map[string]any{
		"entity_id": id("asset", 3), "asset_id": id("asset", 3), "previous_state": "done",
	})}
	s.batch = []outbox.Event{
		outbox.CutCompleted(a, id("cut", 4), id("asset", 4)),
		outbox.CutFailed(b, id("cut", 5), id("asset", 5)),
		outbox.RenderCompleted(a, id("render", 6), id("asset", 4)),
		outbox.RenderFailed(b, id("render", 7), id("asset", 5)),
		outbox.RenderCancelled(a, id("render", 8), id("asset", 6)),
		outbox.AssetReady(a, id("asset", 4), outbox.PreviousStatePendingPayment),
		outbox.AssetPendingPayment(b, id("asset", 9)),
		outbox.AssetFailed(b, id("asset", 5)),
	}
	s.faults = map[string]Fault{
		id("render", 7): FaultRefuse,  // render.failed: first delivery answered 503
		id("asset", 5):  FaultLoseAck, // asset.failed: first acknowledgement lost
	}
	return s
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("demo: marshal %v: %v", v, err))
	}
	return b
}

// run writes the script's rows as a product service would, printing each
// step to w.
func (s script) run(ctx context.Context, pool *pgxpool.Pool, w io.Writer) (produced, error) {
	var p produced
	step := func(how, what, outcome string) { fmt.Fprintf(w, "  %-10s %-72s %s\n", how, what, outcome) }

	if _, err := pool.Exec(ctx, insertRenderSQL, s.renderDone, s.app, s.asset); err != nil {
		return p, fmt.Errorf("insert render: %w", err)
	}
	if _, err := pool.Exec(ctx, insertRenderSQL, s.renderCancelled, s.app, s.asset); err != nil {
		return p, fmt.Errorf("insert render: %w", err)
	}

	// 1. A state change and its event in one transaction, committed.
	ev := outbox.RenderCompleted(s.app, s.renderDone, s.asset)
	e, err := s.renderTx(ctx, pool, s.renderDone, "completed", ev, true)
	if err != nil {
		return p, err
	}
	p.expected = append(p.expected, e)
	step("go tx", fmt.Sprintf("UPDATE renders: %s completed; outbox.Emit %s", s.renderDone, ev.Type), fmt.Sprintf("committed    row %d", e.RowID))

	// 2. The same, rolled back: neither the state change nor the row exists.
	ev = outbox.RenderCancelled(s.app, s.renderCancelled, s.asset)
	if p.rolledBack, err = s.renderTx(ctx, pool, s.renderCancelled, "cancelled", ev, false); err != nil {
		return p, err
	}
	var exists bool
	var state string
	if err := pool.QueryRow(ctx, rowExistsSQL, p.rolledBack.RowID).Scan(&exists); err != nil {
		return p, fmt.Errorf("look up rolled-back row: %w", err)
	}
	if err := pool.QueryRow(ctx, renderStateSQL, s.renderCancelled).Scan(&state); err != nil {
		return p, fmt.Errorf("read render state: %w", err)
	}
	if exists || state != "running" {
		return p, fmt.Errorf("rolled-back transaction left row %d (exists: %t) and render state %q", p.rolledBack.RowID, exists, state)
	}
	step("go tx", fmt.Sprintf("UPDATE renders: %s cancelled; outbox.Emit %s", s.renderCancelled, ev.Type),
		fmt.Sprintf("rolled back  row %d and the state change are gone: nothing to deliver", p.rolledBack.RowID))

	// 3. Plain SQL, as any language would, outside an explicit transaction.
	var id int64
	if err := pool.QueryRow(ctx, insertOutboxSQL, s.plain.AppID, string(s.plain.Type), []byte(s.plain.Data)).Scan(&id); err != nil {
		return p, fmt.Errorf("insert outbox row by SQL: %w", err)
	}
	p.expected = append(p.expected, s.emitted(id, s.plain, "plain SQL", time.Now()))
	step("plain SQL", fmt.Sprintf("INSERT INTO outbox ... %s (data.frames 9007199254740993)", s.plain.Type), fmt.Sprintf("committed    row %d", id))

	// 4. An invalid row: the INSERT itself refuses it.
	err = pool.QueryRow(ctx, insertOutboxSQL, s.invalid.AppID, string(s.invalid.Type), []byte(s.invalid.Data)).Scan(&id)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return p, fmt.Errorf("invalid outbox row was not refused by the database: id %d, error %v", id, err)
	}
	p.refused = pgErr
	step("plain SQL", fmt.Sprintf("INSERT INTO outbox ... %s, data.previous_state \"done\"", s.invalid.Type),
		fmt.Sprintf("refused      ERROR: %s (SQLSTATE %s, rule %s)", pgErr.Message, pgErr.Code, pgErr.ConstraintName))

	// 5. One event of each type, in one transaction.
	tx, err := pool.Begin(ctx)
	if err != nil {
		return p, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	ids, err := outbox.EmitBatch(ctx, tx, s.batch)
	if err != nil {
		return p, fmt.Errorf("emit batch: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return p, fmt.Errorf("commit batch: %w", err)
	}
	at := time.Now()
	for i, ev := range s.batch {
		p.expected = append(p.expected, s.emitted(ids[i], ev, "go batch", at))
	}
	step("go tx", fmt.Sprintf("outbox.EmitBatch: one event of each of the %d types", len(s.batch)),
		fmt.Sprintf("committed    rows %d-%d", ids[0], ids[len(ids)-1]))
	return p, nil
}

// renderTx moves a render to state and emits ev in one transaction, then
// commits or rolls back.
func (s script) renderTx(ctx context.Context, pool *pgxpool.Pool, renderID, state string, ev outbox.Event, commit bool) (Emitted, error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return Emitted{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	tag, err := tx.Exec(ctx, finishRenderSQL, renderID, state)
	if err != nil {
		return Emitted{}, fmt.Errorf("update render %s to %s: %w", renderID, state, err)
	}
	if tag.RowsAffected() != 1 {
		return Emitted{}, fmt.Errorf("update render %s to %s: %d rows updated, want 1", renderID, state, tag.RowsAffected())
	}
	id, err := outbox.Emit(ctx, tx, ev)
	if err != nil {
		return Emitted{}, fmt.Errorf("emit %s: %w", ev.Type, err)
	}
	if !commit {
		if err := tx.Rollback(ctx); err != nil {
			return Emitted{}, fmt.Errorf("roll back: %w", err)
		}
		return s.emitted(id, ev, "go tx", time.Time{}), nil
	}
	if err := tx.Commit(ctx); err != nil {
		return Emitted{}, fmt.Errorf("commit: %w", err)
	}
	return s.emitted(id, ev, "go tx", time.Now()), nil
}

func (s script) emitted(id int64, ev outbox.Event, how string, at time.Time) Emitted {
	var d outbox.Data
	_ = json.Unmarshal(ev.Data, &d)
	return Emitted{RowID: id, App: ev.AppID, Type: ev.Type, EntityID: d.EntityID, Data: ev.Data, How: how, CommittedAt: at}
}

// createRenders creates the demo's renders table when it is absent.
func createRenders(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10s'`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, createRendersSQL); err != nil {
			return fmt.Errorf("create table renders: %w", err)
		}
		return nil
	})
}
