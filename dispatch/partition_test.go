package dispatch_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// TestRowsAcrossPartitions delivers, exactly once and in each key's
// order, rows spread over partitions the way partition_at allows: a batch
// whose rows are in several partitions, a key whose next row is in an
// older partition than its predecessor (its transaction started first and
// committed later), one in outbox_legacy (at -infinity: the job's span is
// open from then on), and a
// failed row that retention moved to the current partition, then
// replayed: its new job is bounded by where it is now.
func TestRowsAcrossPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{config: func(c *dispatch.Config) {
		c.RescanInterval = time.Hour
		c.StaleAfter = time.Hour // a row a job failed to find is not handed over again
	}})
	b.fake.SetInterceptor(failFirstOfType("asset.pending_payment", svixfake.Reply{Status: http.StatusUnprocessableEntity}))

	// Three partitions before the oldest dated one, as retention keeps.
	if _, err := b.pool.Exec(ctx, `
DO $$
DECLARE
    step interval := (SELECT partition_interval FROM outbox_partition_config);
    hi   timestamptz := (SELECT min(from_time) FROM outbox_partitions WHERE from_time > '-infinity');
BEGIN
    FOR i IN 1..3 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF outbox FOR VALUES FROM (%L) TO (%L)',
                       'outbox_p' || to_char((hi - step) AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS'), hi - step, hi);
        hi := hi - step;
    END LOOP;
END $$`); err != nil {
		t.Fatal(err)
	}
	insert := func(typ, asset, entity string) int64 {
		t.Helper()
		var id int64
		if err := b.pool.QueryRow(ctx, `INSERT INTO outbox (app_id, event_type, data)
			VALUES ('acme', $1, jsonb_build_object('asset_id', $2::text, 'entity_id', $3::text)) RETURNING id`, typ, asset, entity).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// move sets a row's partition_at as retention does (relay.outbox_move).
	move := func(id int64, at string) {
		t.Helper()
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // a no-op after commit
		if _, err := tx.Exec(ctx, `SET LOCAL relay.outbox_move = on`); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `UPDATE outbox SET partition_at = `+at+` WHERE id = $1`, id); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const (
		oldest = `(SELECT min(from_time) FROM outbox_partitions WHERE from_time > '-infinity') + interval '1 hour'`
		older  = `(SELECT min(from_time) FROM outbox_partitions WHERE from_time > '-infinity') + (SELECT partition_interval FROM outbox_partition_config) + interval '1 hour'`
	)

	// Key a1: its rows' partitions go current, oldest, older: its next
	// row, claimed into the running job, is in a partition before its
	// predecessor's and outside the span of the job's first rows (older
	// to current).
	a1 := []int64{insert("render.completed", "a1", "r1"), insert("render.completed", "a1", "r2"), insert("render.completed", "a1", "r3")}
	move(a1[1], oldest)
	move(a1[2], older)
	// Heads of other keys, spread over every partition not ahead: one
	// batch spans them.
	heads := []int64{insert("cut.completed", "b1", "c1"), insert("cut.completed", "c1", "c2"), insert("cut.completed", "d1", "c3")}
	move(heads[0], older)
	// Key c1's next row is in outbox_legacy.
	heads = append(heads, insert("cut.completed", "c1", "c4"))
	move(heads[3], `'-infinity'`)
	// A row Svix refuses: it fails, retention moves it out of its old
	// partition to the current one, and a replay delivers it.
	failing := insert("asset.pending_payment", "e1", "e1")
	move(failing, older)

	b.start(t)
	all := append(append(append([]int64{}, a1...), heads...), failing)
	b.waitDelivered(t, len(all)-1)
	waitFor(t, 30*time.Second, "the refused row to fail", func() bool { return b.count(t, "failed_at IS NOT NULL") == 1 })

	move(failing, `now()`)
	var found bool
	if err := b.pool.QueryRow(ctx, `SELECT outbox_replay($1)`, failing).Scan(&found); err != nil || !found {
		t.Fatalf("outbox_replay(%d) = %v, %v", failing, found, err)
	}
	b.waitDelivered(t, len(all))
	for _, id := range all {
		b.assertDeliveredOnce(t, id)
	}
	if n := len(b.fake.AllMessages()); n != len(all) {
		t.Errorf("svix holds %d messages, want %d", n, len(all))
	}
	for asset, types := range acceptedOrder(t, b.fake) {
		if asset == "a1" && len(types) != 3 {
			t.Errorf("a1: svix accepted %v, want three renders", types)
		}
	}
	var got []string
	for _, m := range b.fake.AllMessages() {
		var p struct {
			Data struct {
				AssetID  string `json:"asset_id"`
				EntityID string `json:"entity_id"`
			} `json:"data"`
		}
		if err := jsonUnmarshal(m.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if p.Data.AssetID == "a1" {
			got = append(got, p.Data.EntityID)
		}
	}
	if len(got) != 3 || got[0] != "r1" || got[1] != "r2" || got[2] != "r3" {
		t.Errorf("a1: svix accepted %v, want r1, r2, r3 (commit order)", got)
	}
	// The batches' spans were bounded, and one spanned partitions.
	var bounded, wide int
	if err := b.pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE args ? 'part_from_us'),
		       count(*) FILTER (WHERE (args ->> 'part_to_us')::bigint - (args ->> 'part_from_us')::bigint > 86400000000)
		  FROM river_job WHERE kind = $1`, dispatch.BatchKind).Scan(&bounded, &wide); err != nil {
		t.Fatal(err)
	}
	if bounded == 0 || wide == 0 {
		t.Errorf("%d batch jobs carry a span, %d over more than a day: want some of each", bounded, wide)
	}
}
