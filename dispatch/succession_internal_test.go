package dispatch

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestRowNumberedDuringItsPredecessorsOutcome plays the interleaving that
// admission and succession must cover between them without a lock: the
// outcome transaction of a key's row looks for the next row before that
// row is numbered, and admission looks at the new row while the outcome
// is not committed yet (so its predecessor still looks undelivered). The
// row is claimed once the outcome commits, without waiting for a rescan.
func TestRowNumberedDuringItsPredecessorsOutcome(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := pgtest.Migrated(t)
	r, err := New(pool, nil, Config{RescanInterval: 24 * 3600e9})
	if err != nil {
		t.Fatal(err)
	}
	insert := func(entity string) int64 {
		t.Helper()
		var id int64
		if err := pool.QueryRow(ctx, `INSERT INTO outbox (app_id, event_type, data)
			VALUES ('acme', 'render.completed', jsonb_build_object('entity_id', $1::text, 'asset_id', 'a1')) RETURNING id`, entity).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if _, err := r.seq.Step(ctx); err != nil {
			t.Fatal(err)
		}
		return id
	}
	claimedBy := func(id int64) *int64 {
		t.Helper()
		var job *int64
		if err := pool.QueryRow(ctx, `SELECT job_id FROM outbox WHERE id = $1`, id).Scan(&job); err != nil {
			t.Fatal(err)
		}
		return job
	}

	first := insert("r1")
	if _, err := r.feeder.admit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	job := claimedBy(first)
	if job == nil {
		t.Fatal("the first row was not claimed")
	}

	// The first row's outcome: recorded, and its key's next row looked
	// for (there is none yet).
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after commit
	if _, err := tx.Exec(ctx, `UPDATE outbox SET delivered_at = now() WHERE id = $1`, first); err != nil {
		t.Fatal(err)
	}
	ended := &batchRow{id: first, appID: "acme", assetID: "a1", res: rowResult{kind: rowDelivered}}
	batch := &pgx.Batch{}
	keys := r.queueSuccessors(batch, *job, []*batchRow{ended}, true)
	br := tx.SendBatch(ctx, batch)
	kept, err := r.readKept(br, *job, keys)
	if err != nil {
		t.Fatal(err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 0 {
		t.Fatalf("claimed %v before the next row existed", kept)
	}

	// Meanwhile the next row commits, is numbered and admission looks at
	// it: its predecessor is not delivered as far as admission can see.
	second := insert("r2")
	if _, err := r.feeder.admit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if job := claimedBy(second); job != nil {
		t.Fatalf("the second row was claimed (job %d) while the first was undelivered", *job)
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r.recheckSuccessors(ctx, keys)
	if claimedBy(second) == nil {
		t.Fatal("the second row was not claimed after its predecessor's outcome committed")
	}
}
