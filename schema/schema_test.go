package schema_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/schema"
)

func TestMigrate(t *testing.T) {
	t.Parallel()

	t.Run("AppliesBothLinesThenNothing", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		pool := pgtest.NewSchema(t).Pool(t)

		applied, err := schema.Migrate(ctx, pool)
		if err != nil {
			t.Fatalf("first migrate: %v", err)
		}
		lines := map[schema.Line]int{}
		for _, m := range applied {
			lines[m.Line]++
		}
		if lines[schema.LineOutbox] == 0 || lines[schema.LineRiver] == 0 {
			t.Fatalf("first migrate applied %v, want both lines", applied)
		}

		again, err := schema.Migrate(ctx, pool)
		if err != nil {
			t.Fatalf("second migrate: %v", err)
		}
		if len(again) != 0 {
			t.Fatalf("second migrate applied %v, want nothing", again)
		}

		status, err := schema.Status(ctx, pool)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		for _, m := range status {
			if !m.Applied {
				t.Errorf("after migrate, %v is pending", m)
			}
		}
	})

	t.Run("StatusBeforeMigrateListsPending", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.NewSchema(t).Pool(t)
		status, err := schema.Status(context.Background(), pool)
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if len(status) == 0 {
			t.Fatal("status listed no migrations")
		}
		for _, m := range status {
			if m.Applied {
				t.Errorf("fresh schema: %v is applied", m)
			}
		}
	})

	t.Run("ConcurrentRunsApplyOnce", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := pgtest.NewSchema(t)
		const runs = 4
		results := make([][]schema.Migration, runs)
		errs := make([]error, runs)
		var wg sync.WaitGroup
		for i := range runs {
			pool := s.Pool(t) // a pool per run, as separate processes would have
			wg.Go(func() { results[i], errs[i] = schema.Migrate(ctx, pool) })
		}
		wg.Wait()
		total := 0
		for i := range runs {
			if errs[i] != nil {
				t.Fatalf("run %d: %v", i, errs[i])
			}
			total += len(results[i])
		}
		status, err := schema.Status(ctx, s.Pool(t))
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		if total != len(status) {
			t.Fatalf("runs applied %d migrations in all, want each of the %d exactly once", total, len(status))
		}
	})

	t.Run("MissingSchemaIsAClearError", func(t *testing.T) {
		t.Parallel()
		s := pgtest.NewSchema(t)
		u, err := url.Parse(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		q.Set("search_path", s.Name+"_nope") // a schema that does not exist
		u.RawQuery = q.Encode()
		s.URL = u.String()
		_, err = schema.Migrate(context.Background(), s.Pool(t))
		if err == nil {
			t.Fatal("migrate into a missing schema succeeded")
		}
		// The message names the missing schema and what to do about it.
		want := fmt.Sprintf("no schema of search_path %q exists: create it first (CREATE SCHEMA ...)", s.Name+"_nope")
		if !strings.Contains(err.Error(), want) {
			t.Errorf("migrate into a missing schema: %q, want it to say %q", err, want)
		}
	})
}

func TestMigrationsNumbered(t *testing.T) {
	t.Parallel()
	if _, err := schema.Migrations(); err != nil {
		t.Fatal(err)
	}
}

// A producer whose search_path lacks the relay's schema writes to
// <schema>.outbox by name; the trigger functions find their tables anyway.
func TestQualifiedInsert(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := pgtest.Migrated(t)
	base, err := pgxpool.New(ctx, pgtest.BaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	table := pgx.Identifier{s.Name, "outbox"}.Sanitize()
	var id int64
	err = base.QueryRow(ctx, `INSERT INTO `+table+` (app_id, event_type, data)
		VALUES ('acme', 'asset.ready', '{"entity_id":"a","asset_id":"a","previous_state":"processing"}') RETURNING id`).Scan(&id)
	if err != nil {
		t.Fatalf("qualified insert: %v", err)
	}
	var replayed bool
	if err := base.QueryRow(ctx, `SELECT `+pgx.Identifier{s.Name, "outbox_replay"}.Sanitize()+`($1)`, id).Scan(&replayed); err != nil || !replayed {
		t.Fatalf("qualified replay: %v, %v", replayed, err)
	}
	_, err = base.Exec(ctx, `INSERT INTO `+table+` (app_id, event_type, data) VALUES ('acme', 'nope', '{}')`)
	if err == nil || !strings.Contains(err.Error(), "outbox.event_type must be one of") {
		t.Fatalf("qualified bad insert: %v, want the trigger's refusal", err)
	}
}
