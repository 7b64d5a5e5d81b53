package sequencer_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/sequencer"
	"github.com/mediaplatform/relay/internal/testkit"
)

func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m)
}

const insertSQL = `INSERT INTO outbox (app_id, event_type, data)
VALUES ('acme', 'asset.failed', jsonb_build_object('entity_id', $1::text, 'asset_id', 'asset_' || $1::text)) RETURNING id`

func insert(t *testing.T, ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, entity string) int64 {
	t.Helper()
	var id int64
	if err := q.QueryRow(ctx, insertSQL, entity).Scan(&id); err != nil {
		t.Fatalf("insert %s: %v", entity, err)
	}
	return id
}

// seqOf returns the row's commit_seq, 0 when it has none yet.
func seqOf(t *testing.T, ctx context.Context, pool *pgxpool.Pool, id int64) int64 {
	t.Helper()
	var seq *int64
	if err := pool.QueryRow(ctx, `SELECT commit_seq FROM outbox WHERE id = $1`, id).Scan(&seq); err != nil {
		t.Fatalf("read commit_seq of %d: %v", id, err)
	}
	if seq == nil {
		return 0
	}
	return *seq
}

func newSequencer(t *testing.T, pool *pgxpool.Pool, cfg sequencer.Config) *sequencer.Sequencer {
	t.Helper()
	s, err := sequencer.New(pool, cfg)
	if err != nil {
		t.Fatalf("new sequencer: %v", err)
	}
	return s
}

func TestSequencer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("LateCommitGetsTheHigherNumber", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		s := newSequencer(t, pool, sequencer.Config{})

		// Transaction 1 takes the lower id and stays open.
		tx1, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx1.Rollback(ctx) //nolint:errcheck // committed below
		first := insert(t, ctx, tx1, "first")
		second := insert(t, ctx, pool, "second") // commits at once

		if n, err := s.Step(ctx); err != nil || n != 1 {
			t.Fatalf("step with one committed row: n = %d, err = %v; want 1, nil", n, err)
		}
		var firstBefore *int64
		if err := tx1.QueryRow(ctx, `SELECT commit_seq FROM outbox WHERE id = $1`, first).Scan(&firstBefore); err != nil || firstBefore != nil {
			t.Fatalf("uncommitted row %d: commit_seq %v, err %v; want NULL", first, firstBefore, err)
		}
		secondSeq := seqOf(t, ctx, pool, second)
		if secondSeq == 0 {
			t.Fatalf("committed row %d has no commit_seq while an older transaction is open", second)
		}

		if err := tx1.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Step(ctx); err != nil || n != 1 {
			t.Fatalf("step after the late commit: n = %d, err = %v; want 1, nil", n, err)
		}
		if firstSeq := seqOf(t, ctx, pool, first); firstSeq <= secondSeq {
			t.Fatalf("row %d (lower id, committed later) has commit_seq %d, want above %d of row %d", first, firstSeq, secondSeq, second)
		}
	})

	t.Run("OwnKnowsItsStepsNotifications", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		s := newSequencer(t, pool, sequencer.Config{})
		listener, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer listener.Release()
		if _, err := listener.Exec(ctx, `LISTEN outbox_sequenced`); err != nil {
			t.Fatal(err)
		}
		// NOTIFY channels are database-wide: tests of other schemas and
		// packages number rows at the same time, so notifications are
		// read until the one looked for arrives.
		until := func(want func(*pgconn.Notification) bool) *pgconn.Notification {
			t.Helper()
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			for {
				n, err := listener.Conn().WaitForNotification(wctx)
				if err != nil {
					return nil
				}
				if want(n) {
					return n
				}
			}
		}

		insert(t, ctx, pool, "own")
		if n, err := s.Step(ctx); err != nil || n != 1 {
			t.Fatalf("step: n = %d, err = %v; want 1, nil", n, err)
		}
		if n := until(func(n *pgconn.Notification) bool { return s.Own(n.PID) }); n == nil {
			t.Errorf("no notification on outbox_sequenced is taken for the step's own")
		}

		// A step of another process (another relay, relay serve), on a
		// connection of its own.
		other, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close(ctx)
		insert(t, ctx, pool, "foreign")
		if _, err := other.Exec(ctx, `SELECT outbox_sequence()`); err != nil {
			t.Fatal(err)
		}
		pid := other.PgConn().PID()
		switch n := until(func(n *pgconn.Notification) bool { return n.PID == pid }); {
		case n == nil:
			t.Errorf("no notification from the other process's step (pid %d)", pid)
		case s.Own(n.PID):
			t.Errorf("the notification of another process's step (pid %d) is taken for its own", pid)
		}
	})

	t.Run("OneStepNumbersInIdOrder", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		s := newSequencer(t, pool, sequencer.Config{Batch: 3})
		var ids []int64
		for i := range 10 {
			ids = append(ids, insert(t, ctx, pool, "e"+string(rune('a'+i))))
		}
		if n, err := s.Step(ctx); err != nil || n != 10 {
			t.Fatalf("step: n = %d, err = %v; want 10 over four batches", n, err)
		}
		prev := int64(0)
		for _, id := range ids {
			seq := seqOf(t, ctx, pool, id)
			if seq != prev+1 {
				t.Fatalf("row %d has commit_seq %d, want %d (numbers follow ids, without gaps)", id, seq, prev+1)
			}
			prev = seq
		}
	})

	t.Run("ConcurrentStepsNeverShareANumber", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		const writers, rows = 4, 50
		var wg sync.WaitGroup
		stop := make(chan struct{})
		errs := make(chan error, 8)
		for range 3 {
			s := newSequencer(t, pool, sequencer.Config{Batch: 7})
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := s.Step(ctx); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		var writersWG sync.WaitGroup
		for w := range writers {
			writersWG.Add(1)
			go func() {
				defer writersWG.Done()
				for i := range rows {
					if _, err := pool.Exec(ctx, insertSQL, string(rune('a'+w))+string(rune('a'+i%26))); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		writersWG.Wait()
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if _, err := newSequencer(t, pool, sequencer.Config{}).Step(ctx); err != nil {
			t.Fatal(err)
		}
		var total, distinct, unnumbered int
		var maxSeq int64
		err := pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT commit_seq), count(*) FILTER (WHERE commit_seq IS NULL), coalesce(max(commit_seq), 0) FROM outbox`).
			Scan(&total, &distinct, &unnumbered, &maxSeq)
		if err != nil {
			t.Fatal(err)
		}
		if total != writers*rows || distinct != total || unnumbered != 0 || maxSeq != int64(total) {
			t.Fatalf("rows %d, distinct numbers %d, unnumbered %d, max %d; want %d rows numbered 1..%d", total, distinct, unnumbered, maxSeq, writers*rows, writers*rows)
		}
	})

	t.Run("NumbersAreNeverReusedAfterRowsAreDeleted", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		s := newSequencer(t, pool, sequencer.Config{})
		a := insert(t, ctx, pool, "a")
		if _, err := s.Step(ctx); err != nil {
			t.Fatal(err)
		}
		before := seqOf(t, ctx, pool, a)
		if _, err := pool.Exec(ctx, `DELETE FROM outbox`); err != nil {
			t.Fatal(err)
		}
		b := insert(t, ctx, pool, "b")
		if _, err := s.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if after := seqOf(t, ctx, pool, b); after <= before {
			t.Fatalf("after pruning, a new row got commit_seq %d, want above %d", after, before)
		}
	})

	t.Run("RefusesToNumberInsideAWritingTransaction", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // always rolled back
		insert(t, ctx, tx, "own")
		_, err = tx.Exec(ctx, `SELECT outbox_sequence()`)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "written nothing") {
			t.Fatalf("outbox_sequence in a writing transaction: err = %v, want a refusal", err)
		}
	})

	t.Run("RefusesRepeatableRead", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // always rolled back
		_, err = tx.Exec(ctx, `SELECT outbox_sequence()`)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "READ COMMITTED") {
			t.Fatalf("outbox_sequence at repeatable read: err = %v, want a refusal naming READ COMMITTED", err)
		}
	})

	t.Run("RunNumbersRowsByPollAndWake", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		var mu sync.Mutex
		seen := 0
		s := newSequencer(t, pool, sequencer.Config{PollInterval: time.Hour, OnSequenced: func(n int) {
			mu.Lock()
			seen += n
			mu.Unlock()
		}})
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.Run(runCtx) }()
		defer func() { cancel(); <-done }()

		id := insert(t, ctx, pool, "woken")
		// The step commits before Run reports it: wait for both.
		testkit.WaitFor(t, 10*time.Second, "the row to be numbered and reported after a Wake", func() bool {
			s.Wake()
			mu.Lock()
			reported := seen > 0
			mu.Unlock()
			return reported && seqOf(t, ctx, pool, id) != 0
		})
		mu.Lock()
		defer mu.Unlock()
		if seen != 1 {
			t.Fatalf("OnSequenced saw %d rows, want 1", seen)
		}
	})

	t.Run("NumberedThroughIsTheLastCommittedStep", func(t *testing.T) {
		// outbox_sequence_state.numbered_through (NumberedThroughSQL)
		// moves with each step's commit: a snapshot never sees a row
		// numbered above it nor misses one at or below it, even while a
		// step is open.
		t.Parallel()
		pool := pgtest.Pool(t)
		through := func() int64 {
			t.Helper()
			var n int64
			if err := pool.QueryRow(ctx, `SELECT `+sequencer.NumberedThroughSQL).Scan(&n); err != nil {
				t.Fatalf("read numbered_through: %v", err)
			}
			return n
		}
		if n := through(); n != 0 {
			t.Fatalf("numbered_through of an empty outbox = %d, want 0", n)
		}
		s := newSequencer(t, pool, sequencer.Config{})
		for i := range 3 {
			insert(t, ctx, pool, "n"+string(rune('a'+i)))
		}
		if _, err := s.Step(ctx); err != nil {
			t.Fatal(err)
		}
		if n := through(); n != 3 {
			t.Fatalf("numbered_through after numbering 3 rows = %d, want 3", n)
		}

		insert(t, ctx, pool, "nd")
		insert(t, ctx, pool, "ne")
		open, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer open.Rollback(ctx) //nolint:errcheck // committed below
		var n int
		if err := open.QueryRow(ctx, `SELECT outbox_sequence()`).Scan(&n); err != nil || n != 2 {
			t.Fatalf("open step: n = %d, err = %v; want 2", n, err)
		}
		var visible, bounded int64
		if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE commit_seq <= `+sequencer.NumberedThroughSQL+`)
		    FROM outbox WHERE commit_seq IS NOT NULL`).Scan(&visible, &bounded); err != nil {
			t.Fatal(err)
		}
		if got := through(); got != 3 || visible != 3 || bounded != 3 {
			t.Fatalf("while a step is open: numbered_through %d, %d rows numbered visible, %d up to numbered_through; want 3 of each", got, visible, bounded)
		}
		if err := open.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		var high int64
		if err := pool.QueryRow(ctx, `SELECT max(commit_seq) FROM outbox`).Scan(&high); err != nil {
			t.Fatal(err)
		}
		if got := through(); got != 5 || high != 5 {
			t.Fatalf("after the step committed: numbered_through %d, max(commit_seq) %d; want 5", got, high)
		}

		// Without its row (deleted by hand) the bound lets everything
		// through instead of hiding rows.
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // undone
		if _, err := tx.Exec(ctx, `DELETE FROM outbox_sequence_state`); err != nil {
			t.Fatal(err)
		}
		var missing int64
		if err := tx.QueryRow(ctx, `SELECT `+sequencer.NumberedThroughSQL).Scan(&missing); err != nil || missing != 1<<63-1 {
			t.Fatalf("numbered_through without its row = %d (err %v), want the largest bigint", missing, err)
		}
	})

	t.Run("StepDoesNotSortTheBacklog", func(t *testing.T) {
		// Statistics taken while the outbox held 10 rows, then a backlog
		// of 20,000 unnumbered rows (autovacuum off: they stay stale). The
		// step's read of the oldest unnumbered rows, under the settings
		// outbox_sequence runs with (pg_proc.proconfig), must be a Merge
		// Append of the partitions' outbox_unsequenced_idx that stops
		// after max_rows, not a Sort of the whole backlog: with these
		// statistics, the planner's default choice is the Sort.
		t.Parallel()
		pool := pgtest.Pool(t)
		for _, sql := range []string{
			`DO $$ DECLARE p regclass; BEGIN
			     FOR p IN SELECT partition FROM outbox_partitions LOOP
			         EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', p);
			     END LOOP;
			 END $$`,
			`INSERT INTO outbox (app_id, event_type, data)
			 SELECT 'acme', 'cut.completed', jsonb_build_object('entity_id', 'c' || i, 'asset_id', 'a' || i) FROM generate_series(1, 10) i`,
			`SELECT outbox_sequence()`,
			`ANALYZE outbox`,
			`INSERT INTO outbox (app_id, event_type, data)
			 SELECT 'acme', 'cut.completed', jsonb_build_object('entity_id', 'c' || i, 'asset_id', 'a' || i) FROM generate_series(11, 20010) i`,
		} {
			if _, err := pool.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx) //nolint:errcheck // read only
		rows, err := tx.Query(ctx, `SELECT unnest(proconfig) FROM pg_proc WHERE oid = 'outbox_sequence(integer)'::regprocedure`)
		if err != nil {
			t.Fatal(err)
		}
		settings, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range settings {
			name, value, _ := strings.Cut(s, "=")
			if _, err := tx.Exec(ctx, `SELECT set_config($1, $2, true)`, name, value); err != nil {
				t.Fatalf("apply outbox_sequence's setting %s: %v", s, err)
			}
		}
		// The read in outbox_sequence (migration 00008), as it runs there.
		rows, err = tx.Query(ctx, `EXPLAIN SELECT id, partition_at, row_number() OVER (ORDER BY id) AS rn
		      FROM outbox WHERE commit_seq IS NULL ORDER BY id LIMIT 5000`)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, "Merge Append") || !strings.Contains(plan, "unsequenced_idx") || strings.Contains(plan, "Sort  (") {
			t.Fatalf("numbering step's read with settings %v, stale statistics: want a Merge Append of outbox_unsequenced_idx and no Sort, got\n%s", settings, plan)
		}
	})

	t.Run("ConfigIsValidated", func(t *testing.T) {
		t.Parallel()
		for _, cfg := range []sequencer.Config{{Batch: -1}, {PollInterval: -time.Second}, {StepTimeout: -1}} {
			if _, err := sequencer.New(nil, cfg); err == nil {
				t.Errorf("New(%+v) = nil error, want a refusal", cfg)
			}
		}
	})
}
