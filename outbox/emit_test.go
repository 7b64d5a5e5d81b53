package outbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/outbox"
)

func TestEmit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("EveryConstructorIsAccepted", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		evs := []outbox.Event{
			outbox.CutCompleted("acme", "cut_1", "asset_1"),
			outbox.CutFailed("acme", "cut_1", "asset_1"),
			outbox.RenderCompleted("acme", "render_1", "asset_1"),
			outbox.RenderFailed("acme", "render_1", "asset_1"),
			outbox.RenderCancelled("acme", "render_1", "asset_1"),
			outbox.AssetReady("acme", "asset_1", outbox.PreviousStateProcessing),
			outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment),
			outbox.AssetPendingPayment("acme", "asset_1"),
			outbox.AssetFailed("acme", "asset_1"),
		}
		seen := map[outbox.EventType]bool{}
		for _, ev := range evs {
			if _, err := outbox.Emit(ctx, pool, ev); err != nil {
				t.Errorf("%s: %v", ev.Type, err)
			}
			seen[ev.Type] = true
		}
		if len(seen) != len(outbox.EventTypes) {
			t.Errorf("constructors cover %d types, catalog has %d", len(seen), len(outbox.EventTypes))
		}
	})

	t.Run("CatalogMatchesTheDatabase", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		rows, err := pool.Query(ctx, `SELECT name FROM outbox_event_type ORDER BY name`)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for rows.Next() {
			var n string
			_ = rows.Scan(&n)
			names = append(names, n)
		}
		var want []string
		for _, typ := range outbox.EventTypes {
			want = append(want, string(typ))
		}
		if strings.Join(names, ",") != strings.Join(want, ",") {
			t.Errorf("database catalog %v, Go catalog %v", names, want)
		}
	})

	t.Run("DatabaseRefusalIsAValidationError", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		// A type the database no longer knows, though Go does.
		if _, err := pool.Exec(ctx, `DELETE FROM outbox_event_type WHERE name = 'cut.failed'`); err != nil {
			t.Fatal(err)
		}
		_, err := outbox.Emit(ctx, pool, outbox.CutFailed("acme", "cut_1", "asset_1"))
		var verr *outbox.ValidationError
		if !errors.As(err, &verr) || verr.Rule != "event_type_known" || verr.Field != "event_type" {
			t.Fatalf("err = %v, want a ValidationError for event_type_known", err)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
			t.Errorf("err does not wrap the database's check_violation: %v", err)
		}
	})

	// Adding a type is a migration: once outbox_event_type has it, Emit
	// writes it, though this package's EventTypes does not list it.
	t.Run("TypeAddedByAMigration", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		if _, err := pool.Exec(ctx, `INSERT INTO outbox_event_type (name, description) VALUES ('cut.started', 'A cut started.')`); err != nil {
			t.Fatal(err)
		}
		ev := outbox.Event{AppID: "acme", Type: "cut.started", Data: []byte(`{"entity_id":"cut_1","asset_id":"asset_1"}`)}
		if _, err := outbox.Emit(ctx, pool, ev); err != nil {
			t.Fatalf("Emit of a type the database's catalog has: %v", err)
		}
		if _, err := outbox.EmitBatch(ctx, pool, []outbox.Event{ev, outbox.CutCompleted("acme", "cut_1", "asset_1")}); err != nil {
			t.Fatalf("EmitBatch with a type the database's catalog has: %v", err)
		}
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE event_type = 'cut.started'`).Scan(&n); err != nil || n != 2 {
			t.Errorf("%d cut.started rows written (%v), want 2", n, err)
		}

		// A type neither knows is refused by the database, as a
		// ValidationError naming the rule.
		ev.Type = "cut.paused"
		_, err := outbox.Emit(ctx, pool, ev)
		var verr *outbox.ValidationError
		var pgErr *pgconn.PgError
		if !errors.As(err, &verr) || verr.Rule != "event_type_known" || verr.Field != "event_type" || !errors.As(err, &pgErr) {
			t.Fatalf("Emit of an unknown type: %v, want the database's event_type_known refusal", err)
		}
		if !strings.Contains(err.Error(), "cut.started") || !strings.Contains(err.Error(), "cut.paused") {
			t.Errorf("the refusal %q does not list the database's types and the bad value", err)
		}
		// A type that cannot reach the database is refused here.
		ev.Type = "cut.\xff"
		if _, err := outbox.Emit(ctx, pool, ev); !errors.As(err, &verr) || verr.Rule != "event_type_known" || errors.As(err, &pgErr) {
			t.Errorf("Emit of a type that is not UTF-8: %v, want event_type_known from Go", err)
		}
		// Validate still checks the catalog the package ships with.
		ev.Type = "cut.started"
		if err := outbox.Validate(ev); !errors.As(err, &verr) || verr.Rule != "event_type_known" {
			t.Errorf("Validate of a type outside EventTypes: %v, want event_type_known", err)
		}
	})

	t.Run("BatchIsAllOrNothing", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		_, err := outbox.EmitBatch(ctx, pool, []outbox.Event{
			outbox.CutCompleted("acme", "cut_1", "asset_1"),
			outbox.CutCompleted("app_bad", "cut_2", "asset_1"),
		})
		var verr *outbox.ValidationError
		if !errors.As(err, &verr) || verr.Rule != "app_id_prefix" || !strings.HasPrefix(err.Error(), "event 1:") {
			t.Fatalf("err = %v, want event 1 refused for app_id_prefix", err)
		}
		var n int
		_ = pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
		if n != 0 {
			t.Errorf("%d rows written by a refused batch", n)
		}
	})

	t.Run("RelayOwnedColumnsAreRefusedAtInsert", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		for _, col := range []string{"attempts = 3", "resends = 1", "enqueued_at = now()", "job_id = 7", "delivered_at = now()",
			"svix_message_id = 'msg_x'", "failed_at = now()", "last_error = 'x'", "replayed_at = now()", "commit_seq = 5"} {
			name, value, _ := strings.Cut(col, " = ")
			_, err := pool.Exec(ctx, `INSERT INTO outbox (app_id, event_type, data, `+name+`)
				VALUES ('acme', 'cut.completed', '{"entity_id":"c","asset_id":"a"}', `+value+`)`)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.ConstraintName != "relay_owned" || !strings.Contains(pgErr.Message, "outbox."+name) {
				t.Errorf("insert setting %s: err = %v, want relay_owned naming the column", name, err)
			}
		}
	})

	t.Run("UpdatesAreValidatedToo", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		id, err := outbox.Emit(ctx, pool, outbox.CutCompleted("acme", "cut_1", "asset_1"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = pool.Exec(ctx, `UPDATE outbox SET data = data - 'asset_id' WHERE id = $1`, id)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.ConstraintName != "data_asset_id" {
			t.Errorf("update dropping asset_id: err = %v, want data_asset_id", err)
		}
	})
}
