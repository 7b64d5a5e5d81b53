package schema_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/testkit"
	"github.com/mediaplatform/relay/outbox"
	"github.com/mediaplatform/relay/schema"
)

// okSender accepts every message at once.
type okSender struct{}

func (okSender) Send(_ context.Context, m dispatch.Message) (dispatch.Sent, error) {
	return dispatch.Sent{MessageID: "msg_" + m.Key}, nil
}
func (okSender) Lookup(context.Context, dispatch.Message) (dispatch.Sent, error) {
	return dispatch.Sent{}, nil
}
func (okSender) CheckAuth(context.Context) error { return nil }

// TestMigration00008Online partitions an outbox of many rows (50,000, or
// OUTBOX_MIGRATION_ROWS: the README's figures are for 1,000,000) while
// producers insert and a relay delivers: no producer's INSERT fails, every
// row is kept once with its id and commit_seq, the old table becomes the
// first partition with its indexes (none rebuilt), and the relay delivers
// every row. It logs the migration's duration and the longest INSERT a
// producer saw (the longest lock wait, plus the INSERT itself).
//
//	OUTBOX_MIGRATION_ROWS=1000000 go test -count=1 -run TestMigration00008Online -v ./schema/
func TestMigration00008Online(t *testing.T) {
	n := 50_000
	if testing.Short() {
		n = 5_000 // the same steps on a smaller table
	}
	if v := os.Getenv("OUTBOX_MIGRATION_ROWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("OUTBOX_MIGRATION_ROWS=%q: want a positive number", v)
		}
	}
	ctx := context.Background()
	pool := pgtest.NewSchema(t).Pool(t)

	provider := stepper(t, pool)
	if _, err := provider.UpTo(ctx, 7); err != nil {
		t.Fatalf("migrate to 7: %v", err)
	}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		t.Fatal(err)
	}

	// The rows, loaded without the validation triggers (they are valid):
	// numbered, 98% delivered, 1% failed, 1% pending.
	loadStart := time.Now()
	for _, q := range []string{
		`ALTER TABLE outbox DISABLE TRIGGER USER`,
		fmt.Sprintf(`INSERT INTO outbox (app_id, event_type, data, commit_seq, enqueued_at, delivered_at, svix_message_id, failed_at, last_error)
		 SELECT 'acme', 'render.completed', jsonb_build_object('entity_id', 'r' || i, 'asset_id', 'a' || (i %% 5000)), i,
		        CASE WHEN i %% 100 <> 0 THEN now() END,
		        CASE WHEN i %% 100 > 1 THEN now() END, CASE WHEN i %% 100 > 1 THEN 'msg_' || i END,
		        CASE WHEN i %% 100 = 1 THEN now() END, CASE WHEN i %% 100 = 1 THEN '422' END
		   FROM generate_series(1, %d) i`, n),
		fmt.Sprintf(`SELECT setval('outbox_commit_seq', %d)`, n),
		`ALTER TABLE outbox ENABLE TRIGGER USER`,
		`VACUUM ANALYZE outbox`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatalf("load %d rows: %v", n, err)
		}
	}
	var size int64
	_ = pool.QueryRow(ctx, `SELECT pg_total_relation_size('outbox')`).Scan(&size)
	t.Logf("loaded %d rows (%.0f MB with indexes) in %s", n, float64(size)/(1<<20), time.Since(loadStart).Round(time.Millisecond))

	relay, err := dispatch.New(pool, okSender{}, dispatch.Config{Concurrency: 20, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- relay.Run(relayCtx) }()
	defer func() {
		stopRelay()
		if err := <-relayDone; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	// Producers insert one row per transaction until the migration ends.
	var (
		inserted, failed atomic.Int64
		longest          atomic.Int64
		firstErr         atomic.Value
		producers        sync.WaitGroup
	)
	produce, stopProducing := context.WithCancel(ctx)
	for p := range 4 {
		producers.Go(func() {
			for i := 0; produce.Err() == nil; i++ {
				start := time.Now()
				_, err := outbox.Emit(ctx, pool, outbox.RenderCompleted("acme", fmt.Sprintf("p%d_%d", p, i), fmt.Sprintf("asset_%d", i%50)))
				d := time.Since(start)
				for {
					cur := longest.Load()
					if int64(d) <= cur || longest.CompareAndSwap(cur, int64(d)) {
						break
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				inserted.Add(1)
			}
		})
	}
	testkit.WaitFor(t, 30*time.Second, "producers to write", func() bool { return inserted.Load() > 100 })
	longest.Store(0)

	start := time.Now()
	if _, err := schema.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	took := time.Since(start)
	during := inserted.Load()
	testkit.WaitFor(t, 30*time.Second, "producers to write after the migration", func() bool { return inserted.Load() > during+100 })
	stopProducing()
	producers.Wait()
	t.Logf("migration 00008 of %d rows: %s; producers wrote %d rows, longest INSERT %s, %d failed",
		n, took.Round(time.Millisecond), inserted.Load(), time.Duration(longest.Load()).Round(time.Millisecond), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d producer INSERTs failed, first: %v", failed.Load(), firstErr.Load())
	}

	var kind string
	var rows, ids, seqs, legacyIdx, builtIdx int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT relkind::text FROM pg_class WHERE oid = 'outbox'::regclass),
		count(*), count(DISTINCT id), count(DISTINCT commit_seq) + count(*) FILTER (WHERE commit_seq IS NULL),
		(SELECT count(*) FROM pg_indexes WHERE tablename = 'outbox_legacy' AND schemaname = current_schema() AND indexname LIKE 'outbox_legacy_%'),
		(SELECT count(*) FROM pg_indexes WHERE tablename = 'outbox_legacy' AND schemaname = current_schema() AND indexname NOT LIKE 'outbox_legacy_%')
		FROM outbox`).Scan(&kind, &rows, &ids, &seqs, &legacyIdx, &builtIdx); err != nil {
		t.Fatal(err)
	}
	if kind != "p" {
		t.Errorf("outbox relkind %q, want p (partitioned)", kind)
	}
	if want := int64(n) + inserted.Load(); rows != want || ids != rows || seqs != rows {
		t.Errorf("%d rows, %d distinct ids, %d distinct commit_seq (or none yet); want %d of each", rows, ids, seqs, want)
	}
	if builtIdx != 0 || legacyIdx < 9 {
		t.Errorf("outbox_legacy has %d indexes of its own and %d built by the attach; want its 9 and none built", legacyIdx, builtIdx)
	}
	testkit.WaitFor(t, 3*time.Minute, "the relay to deliver every row", func() bool {
		var left int64
		err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_undelivered`).Scan(&left)
		return err == nil && left == 0
	})
}
