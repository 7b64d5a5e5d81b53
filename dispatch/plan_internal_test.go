package dispatch

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/nosort"
	"github.com/mediaplatform/relay/internal/pgtest"
)

// TestPlans checks the plans of the claim and of the row gauges. On an
// outbox whose statistics are stale, the claim goes through the
// commit_seq and key indexes, a key's next row through the key index and
// the read of a batch through the primary key: never
// outbox_undelivered_idx, never a scan of the table. The gauges, which
// read the schema's row-state views, are served by the partial indexes
// (outbox_undelivered_idx, outbox_failed_idx) once the statistics are
// current (with stale statistics that say every row is pending, the
// planner counts them with one scan of the table per sample).
func TestPlans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := pgtest.Migrated(t)
	pgtest.StaleOutbox(t, pool)

	// The rows are in the current partition; the others are empty (a
	// scan of an empty partition costs nothing and reads nothing).
	current := currentPartition(ctx, t, pool)
	noScan := []string{"Seq Scan on " + current + " ", "undelivered_idx", "->  Sort "}
	t.Run("AdmitWithStaleStatistics", func(t *testing.T) {
		// As the feeder runs it (nosort): a Merge Append of the
		// partitions' commit_seq indexes, which stops after LIMIT rows.
		checkPlanText(t, explainAdmit(ctx, t, pool, 19900), []string{"Merge Append", current + "_commit_seq_idx", current + "_key_idx"}, noScan)
	})
	t.Run("AdmitIntoWithStaleStatistics", func(t *testing.T) {
		// admitSQL's plan, and each head claimed by primary key.
		plan := explainNoSort(ctx, t, pool, "EXPLAIN", admitIntoSQL, int64(19900), 500, true, false, false, 100, int64(7))
		checkPlanText(t, plan, []string{"Merge Append", current + "_commit_seq_idx", current + "_key_idx", current + "_pkey"}, noScan)
	})
	t.Run("ReadWithStaleStatistics", func(t *testing.T) {
		lo, hi := openSpan().bounds()
		checkPlan(t, pool, readSQL, []any{[]int64{100, 200}, int64(7), true, false, false, lo, hi},
			[]string{current + "_pkey", current + "_key_idx"}, noScan[:2])
	})
	t.Run("HandOffWithStaleStatistics", func(t *testing.T) {
		lo, hi := openSpan().bounds()
		checkPlan(t, pool, handOffSQL, []any{[]int64{100, 200}, int64(7), true, false, false, lo, hi},
			[]string{current + "_pkey", current + "_key_idx"}, noScan[:2])
	})
	t.Run("SuccessorWithStaleStatistics", func(t *testing.T) {
		// One probe of the key index per key.
		checkPlan(t, pool, successorSQL, []any{[]string{"acme", "acme"}, []string{"a1", "a2"}, []string{"", ""}, false},
			[]string{current + "_key_idx"}, noScan[:2]) // its Sort is DISTINCT's, of the keys given
	})
	t.Run("Gauges", func(t *testing.T) {
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE outbox"); err != nil {
			t.Fatal(err)
		}
		checkPlan(t, pool, sampleSQL, nil,
			[]string{current + "_undelivered_idx", current + "_failed_idx"}, noScan[:1])
	})
}

// TestPlansAfterAnalyzeOfUnnumberedRows checks the hot reads on an outbox
// analyzed while every row was waiting to be numbered (the best-case
// bench: a backlog, ANALYZE, then the relay starts), so the statistics say
// commit_seq is always NULL: a key's next row is still found through the
// key index, a batch read through the primary key, and admission reads
// through the commit_seq index. (A probe that also said commit_seq IS NOT
// NULL is planned through outbox_commit_seq_idx instead, which the
// statistics call empty: a scan of every numbered row per key, 1.6 s per
// successor claim in a 50,000-row drain.)
func TestPlansAfterAnalyzeOfUnnumberedRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := pgtest.Migrated(t)
	pgtest.AutovacuumOff(t, pool)
	for _, sql := range []string{
		`INSERT INTO outbox (app_id, event_type, data)
		 SELECT 'acme', 'cut.completed', jsonb_build_object('entity_id', 'c' || i, 'asset_id', 'a' || i)
		   FROM generate_series(1, 5000) i`,
		`ANALYZE outbox`,
		`SELECT outbox_sequence(100000)`,
	} {
		if _, err := pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	current := currentPartition(ctx, t, pool)
	keys := []any{[]string{"acme", "acme"}, []string{"a1", "a2"}, []string{"", ""}, false}
	checkPlan(t, pool, successorSQL, keys, []string{current + "_key_idx"}, []string{"_commit_seq_idx", "Seq Scan on " + current + " "})
	checkPlan(t, pool, claimSuccessorsIntoSQL, append(keys, int64(7)), []string{current + "_key_idx"}, []string{"_commit_seq_idx", "Seq Scan on " + current + " "})
	lo, hi := openSpan().bounds()
	checkPlan(t, pool, readSQL, []any{[]int64{100, 200}, int64(7), true, false, false, lo, hi},
		[]string{current + "_pkey", current + "_key_idx"}, []string{"Seq Scan on " + current + " "})
	checkPlan(t, pool, handOffSQL, []any{[]int64{100, 200}, int64(7), true, false, false, lo, hi},
		[]string{current + "_pkey", current + "_key_idx"}, []string{"Seq Scan on " + current + " "})
	checkPlanText(t, explainAdmit(ctx, t, pool, 100), []string{current + "_commit_seq_idx", current + "_key_idx"}, []string{"Seq Scan on " + current + " "})
	checkPlanText(t, explainNoSort(ctx, t, pool, "EXPLAIN", admitIntoSQL, int64(100), 500, true, false, false, 100, int64(7)),
		[]string{current + "_commit_seq_idx", current + "_key_idx", current + "_pkey"}, []string{"Seq Scan on " + current + " "})
}

// currentPartition is the name of the outbox partition rows inserted now
// go to.
func currentPartition(ctx context.Context, t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var current string
	if err := pool.QueryRow(ctx, `SELECT partition::text FROM outbox_partitions WHERE now() >= from_time AND now() < to_time`).Scan(&current); err != nil {
		t.Fatal(err)
	}
	return current
}

// explainAdmit returns the plan of admission's read of the rows numbered
// after watermark, as the feeder runs it (nosort, ordering on).
func explainAdmit(ctx context.Context, t *testing.T, pool *pgxpool.Pool, watermark int64) string {
	t.Helper()
	return explainNoSort(ctx, t, pool, "EXPLAIN", admitSQL, watermark, 500, true, false, false)
}

// explainNoSort explains (with explain, "EXPLAIN" or "EXPLAIN (...)") sql
// as nosort runs it, in a transaction that is rolled back.
func explainNoSort(ctx context.Context, t *testing.T, pool *pgxpool.Pool, explain, sql string, args ...any) string {
	t.Helper()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // nothing to keep
	if _, err := tx.Exec(ctx, nosort.SQL); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, explain+" "+sql, args...)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// checkPlan explains sql with args and checks that the plan names every
// string of want and none of not.
func checkPlan(t *testing.T, pool *pgxpool.Pool, sql string, args []any, want, not []string) {
	t.Helper()
	checkPlanText(t, pgtest.Explain(t, pool, sql, args...), want, not)
}

func checkPlanText(t *testing.T, plan string, want, not []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(plan, w) {
			t.Errorf("plan does not use %s:\n%s", w, plan)
		}
	}
	for _, n := range not {
		if strings.Contains(plan, n) {
			t.Errorf("plan has %s:\n%s", n, plan)
		}
	}
}

// TestIDLookupsPrune checks that the statements that look rows up by id
// read only the partitions their span covers, with the generic plans pgx's
// prepared statements get after a few runs too: on an outbox with a week
// of older partitions, every id lookup names the primary key of the
// rows' partition only, and the others are removed when the statement
// starts ("Subplans Removed"). An open span (a job made before spans)
// still reads every partition not ahead.
func TestIDLookupsPrune(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, pool := pgtest.Migrated(t)
	addPastPartitions(t, pool, 7)
	var ids []int64
	rows, err := pool.Query(ctx, `INSERT INTO outbox (app_id, event_type, data)
		SELECT 'acme', 'cut.completed', jsonb_build_object('entity_id', 'c' || i, 'asset_id', 'a' || (i % 5))
		  FROM generate_series(1, 20) i RETURNING id`)
	if err != nil {
		t.Fatal(err)
	}
	if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `SELECT outbox_sequence()`); err != nil {
		t.Fatal(err)
	}
	var current string
	var at pgtype.Timestamptz
	if err := pool.QueryRow(ctx, `SELECT tableoid::regclass::text, partition_at FROM outbox WHERE id = $1`, ids[0]).Scan(&current, &at); err != nil {
		t.Fatal(err)
	}
	var notAheadCount int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_partitions WHERE from_time <= now()`).Scan(&notAheadCount); err != nil {
		t.Fatal(err)
	}
	span := spanOf([]claimed{{ids[0], at}})
	lo, hi := span.bounds()
	openLo, openHi := openSpan().bounds()
	idList := []int64{ids[0], ids[1]}
	keys := []any{[]string{"acme"}, []string{"a1"}, []string{""}, false}
	statements := []struct {
		name string
		sql  string
		args func(lo, hi pgtype.Timestamptz) []any
	}{
		{"read", readSQL, func(lo, hi pgtype.Timestamptz) []any { return []any{idList, int64(7), true, false, false, lo, hi} }},
		{"record", recordSQL, func(lo, hi pgtype.Timestamptz) []any {
			return []any{idList, []string{"delivered", "delivered"}, []string{"", ""}, []string{"", ""}, []bool{false, false},
				[]bool{true, true}, []time.Time{time.Now(), time.Now()}, []int64{0, 0}, int64(7), lo, hi}
		}},
		{"setClaimed", setClaimedSQL, func(lo, hi pgtype.Timestamptz) []any { return []any{idList, []int64{7, 7}, lo, hi} }},
		{"handOff", handOffSQL, func(lo, hi pgtype.Timestamptz) []any { return []any{idList, int64(7), true, false, false, lo, hi} }},
		{"demote", demoteSQL, func(lo, hi pgtype.Timestamptz) []any { return []any{idList, int64(7), false, false, lo, hi} }},
	}
	for _, st := range statements {
		t.Run(st.name, func(t *testing.T) {
			plan := explainGeneric(t, pool, "EXPLAIN", st.sql, st.args(lo, hi))
			if got := pkeyPartitions(plan); len(got) != 1 || got[0] != current {
				t.Errorf("id lookup reads the primary key of %v, want %s only:\n%s", got, current, plan)
			}
			if !strings.Contains(plan, "Subplans Removed") {
				t.Errorf("no partition removed at the statement's start:\n%s", plan)
			}
			plan = explainGeneric(t, pool, "EXPLAIN", st.sql, st.args(openLo, openHi))
			if got := pkeyPartitions(plan); len(got) != notAheadCount {
				t.Errorf("with an open span the id lookup reads %d partitions' primary keys, want every one not ahead (%d):\n%s", len(got), notAheadCount, plan)
			}
		})
	}
	t.Run("claimSuccessorsInto", func(t *testing.T) {
		// The rows claimed are found by key, in any partition; the claim
		// looks each up by its id and partition_at, which prunes the
		// other partitions per row as it runs (never executed).
		plan := explainGeneric(t, pool, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)", claimSuccessorsIntoSQL, append(keys, int64(7)))
		ran := pkeyScanRan.FindAllStringSubmatch(plan, -1)
		if len(ran) != 1 || ran[0][1] != current {
			t.Errorf("the claim read the primary key of %v, want %s only:\n%s", ran, current, plan)
		}
	})
}

// explainGeneric explains (with explain, "EXPLAIN" or "EXPLAIN (...)")
// sql's generic plan, the one a prepared statement runs by after its
// first executions, for args: the partitions the args rule out are
// removed when the statement starts. The transaction is rolled back.
func explainGeneric(t *testing.T, pool *pgxpool.Pool, explain, sql string, args []any) string {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // explain only
	if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "PREPARE generic AS "+sql); err != nil {
		t.Fatal(err)
	}
	defer tx.Exec(ctx, "DEALLOCATE generic") //nolint:errcheck // the transaction is rolled back
	// EXECUTE takes its arguments as literals: each is rendered by the
	// server from the value pgx sends, in the parameter's type.
	var types []string
	if err := tx.QueryRow(ctx, `SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'generic'`).Scan(&types); err != nil {
		t.Fatal(err)
	}
	if len(types) != len(args) {
		t.Fatalf("the statement has %d parameters, got %d arguments", len(types), len(args))
	}
	lits := make([]string, len(args))
	for i, a := range args {
		var lit string
		if err := tx.QueryRow(ctx, "SELECT quote_literal($1::"+types[i]+"::text)", a).Scan(&lit); err != nil {
			t.Fatal(err)
		}
		lits[i] = lit + "::" + types[i]
	}
	rows, err := tx.Query(ctx, explain+" EXECUTE generic("+strings.Join(lits, ", ")+")")
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// pkeyPartitions are the partitions whose primary key a plan reads.
func pkeyPartitions(plan string) []string {
	var parts []string
	seen := map[string]bool{}
	for _, m := range pkeyScan.FindAllStringSubmatch(plan, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			parts = append(parts, m[1])
		}
	}
	return parts
}

var (
	pkeyScan    = regexp.MustCompile(`using (outbox_\w+?)_pkey on`)
	pkeyScanRan = regexp.MustCompile(`using (outbox_\w+?)_pkey on \S+ \S+ \(actual rows`)
)

// addPastPartitions adds n empty partitions before the oldest dated one,
// as a week of retention leaves them.
func addPastPartitions(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after commit
	if _, err := tx.Exec(ctx, `SELECT set_config('relay.test_partitions', $1::int::text, true)`, n); err != nil {
		t.Fatal(err)
	}
	_, err = tx.Exec(ctx, `
DO $$
DECLARE
    step interval := (SELECT partition_interval FROM outbox_partition_config);
    hi   timestamptz := (SELECT min(from_time) FROM outbox_partitions WHERE from_time > '-infinity');
BEGIN
    FOR i IN 1..current_setting('relay.test_partitions')::integer LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF outbox FOR VALUES FROM (%L) TO (%L)',
                       'outbox_p' || to_char((hi - step) AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS'), hi - step, hi);
        hi := hi - step;
    END LOOP;
END $$`)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}
