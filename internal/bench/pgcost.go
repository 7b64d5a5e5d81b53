package main

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/relayproc"
)

// The bench's own statements in its database carry this word (as a column
// alias), so that pg_stat_statements can leave them out of the relay's
// count.
const benchMarker = "bench_marker"

// Statement sources of the stmts/row figure.
const (
	stmtsFromStatements = "pg_stat_statements calls"
	stmtsFromXacts      = "transactions (pg_stat_database xact_commit+xact_rollback)"
)

const (
	walLSNSQL  = `SELECT pg_current_wal_lsn()::text AS bench_marker`
	walDiffSQL = `SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint AS bench_marker`
	// Top-level statements of the bench's database, its own left out.
	statementsSQL = `SELECT coalesce(sum(calls), 0)::bigint AS bench_marker FROM pg_stat_statements
	                  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
	                    AND query NOT LIKE '%bench_marker%'`
	// Each statement's counters in the bench's database, its own left out.
	statementStatsSQL = `SELECT queryid, min(left(regexp_replace(query, '\s+', ' ', 'g'), 160)), sum(calls)::bigint,
	                            sum(total_exec_time)::float8, sum(rows)::bigint AS bench_marker
	                       FROM pg_stat_statements
	                      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
	                        AND query NOT LIKE '%bench_marker%' AND queryid IS NOT NULL
	                      GROUP BY queryid`
	xactsSQL = `SELECT (xact_commit + xact_rollback)::bigint AS bench_marker FROM pg_stat_database WHERE datname = current_database()`
	// The outbox's update counters, summed over its partitions;
	// pg_stat_user_tables lags by up to a second for a backend that is
	// still connected, so it is read after the relay has gone.
	outboxUpdatesSQL = `SELECT coalesce(sum(n_tup_upd), 0)::bigint, coalesce(sum(n_tup_hot_upd), 0)::bigint AS bench_marker
	                      FROM pg_stat_user_tables
	                     WHERE relid IN (SELECT i.inhrelid FROM pg_inherits i
	                                       JOIN pg_class c ON c.oid = i.inhparent
	                                       JOIN pg_namespace n ON n.oid = c.relnamespace
	                                      WHERE n.nspname = $1 AND c.relname = 'outbox')`
	// Backends of this database other than the bench's own pools.
	otherBackendsSQL = `SELECT count(*) AS bench_marker FROM pg_stat_activity
	                     WHERE datname = current_database() AND pid <> pg_backend_pid()
	                       AND application_name NOT LIKE 'relay-bench%'`
	// Backends busy in other databases: other work on the same cluster,
	// which the WAL and cluster CPU figures include.
	busyElsewhereSQL = `SELECT count(*) AS bench_marker FROM pg_stat_activity
	                     WHERE datname IS DISTINCT FROM current_database() AND backend_type = 'client backend' AND state = 'active'`
)

// topStatements is how many statements a drain's cost lists.
const topStatements = 10

// pgSnap is what PostgreSQL has counted up to a moment.
type pgSnap struct {
	walLSN            string
	stmts             int64
	own               int64 // the bench's own statements so far
	outboxUpd, hotUpd int64
	backendCPU        map[int]time.Duration
	clusterCPU        time.Duration
	statements        map[int64]stmtStat // nil without pg_stat_statements
}

// stmtStat is one statement's pg_stat_statements counters.
type stmtStat struct {
	query  string
	calls  int64
	execMS float64
	rows   int64
}

// StatementCost is one statement's share of a scenario, from
// pg_stat_statements: execution time is wall time in the server (CPU,
// I/O and lock waits), summed over every backend.
type StatementCost struct {
	Query   string  `json:"query"`
	Calls   int64   `json:"calls"`
	TotalMS float64 `json:"total_exec_ms"`
	MeanMS  float64 `json:"mean_exec_ms"`
	Rows    int64   `json:"rows"`
	// USPerRow is TotalMS per delivered row, in µs.
	USPerRow float64 `json:"exec_us_per_delivered_row"`
}

// SequencerCost is the numbering step's share (SELECT outbox_sequence):
// its time includes waits for the advisory lock that serializes it, so it
// is the step's cost only with one relay.
type SequencerCost struct {
	Steps    int64   `json:"steps"`
	TotalMS  float64 `json:"total_exec_ms"`
	MeanMS   float64 `json:"mean_step_ms"`
	RowsStep float64 `json:"delivered_rows_per_step"`
	USPerRow float64 `json:"exec_us_per_delivered_row"`
	// CapRowsPerSec is the delivered rows over the steps' total time: the
	// rate at which steps of this size and cost would run back to back.
	CapRowsPerSec float64 `json:"cap_rows_per_sec,omitempty"`
}

// sequencerQuery marks the numbering step among the statements.
const sequencerQuery = "outbox_sequence("

// statementStats reads every statement's counters in the bench's database.
func (b *bench) statementStats(ctx context.Context) (map[int64]stmtStat, error) {
	if b.stmtsSource != stmtsFromStatements {
		return nil, nil
	}
	b.own.add()
	rows, err := b.admin.Query(ctx, statementStatsSQL)
	if err != nil {
		return nil, fmt.Errorf("read pg_stat_statements: %w", err)
	}
	out := map[int64]stmtStat{}
	for rows.Next() {
		var id int64
		var st stmtStat
		if err := rows.Scan(&id, &st.query, &st.calls, &st.execMS, &st.rows); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read pg_stat_statements: %w", err)
		}
		out[id] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pg_stat_statements: %w", err)
	}
	return out, nil
}

// statementCosts lists the statements between two readings by execution
// time, the longest first (at most top), and the numbering step's share;
// rows is the rows delivered meanwhile.
func statementCosts(before, after map[int64]stmtStat, rows, top int) ([]StatementCost, *SequencerCost) {
	if after == nil || rows <= 0 {
		return nil, nil
	}
	var out []StatementCost
	var seq *SequencerCost
	n := float64(rows)
	for id, a := range after {
		p := before[id]
		calls := a.calls - p.calls
		if calls <= 0 {
			continue
		}
		sc := StatementCost{Query: a.query, Calls: calls, TotalMS: a.execMS - p.execMS, Rows: a.rows - p.rows}
		sc.MeanMS = sc.TotalMS / float64(calls)
		sc.USPerRow = sc.TotalMS * 1000 / n
		out = append(out, sc)
		if strings.Contains(a.query, sequencerQuery) {
			if seq == nil {
				seq = &SequencerCost{}
			}
			seq.Steps += calls
			seq.TotalMS += sc.TotalMS
		}
	}
	slices.SortFunc(out, func(x, y StatementCost) int { return cmp.Compare(y.TotalMS, x.TotalMS) })
	if len(out) > top {
		out = out[:top]
	}
	if seq != nil {
		seq.MeanMS = seq.TotalMS / float64(seq.Steps)
		seq.RowsStep = n / float64(seq.Steps)
		seq.USPerRow = seq.TotalMS * 1000 / n
		if seq.TotalMS > 0 {
			seq.CapRowsPerSec = n / (seq.TotalMS / 1000)
		}
	}
	return out, seq
}

// Cost is a scenario's PostgreSQL cost per delivered row.
type Cost struct {
	WALBytesPerRow float64 `json:"wal_bytes_per_row"`
	StmtsPerRow    float64 `json:"statements_per_row"`
	StmtsSource    string  `json:"statements_source"`
	RelayUSPerRow  float64 `json:"relay_cpu_us_per_row"`
	// PostgresUSPerRow is the CPU of the backends serving the bench's
	// database (nil when they cannot be told apart or read).
	PostgresUSPerRow *float64 `json:"postgres_cpu_us_per_row,omitempty"`
	// ClusterUSPerRow is the whole cluster's CPU, other databases included.
	ClusterUSPerRow *float64 `json:"cluster_cpu_us_per_row,omitempty"`
	OutboxUpdates   int64    `json:"outbox_updates"`
	HOTRatio        *float64 `json:"outbox_hot_update_ratio,omitempty"`
	// Statements are the statements that took the most execution time,
	// and Sequencer the numbering step (pg_stat_statements only).
	Statements []StatementCost `json:"top_statements,omitempty"`
	Sequencer  *SequencerCost  `json:"sequencer,omitempty"`
}

// counter counts the bench's own statements in its database.
type counter struct{ n atomic.Int64 }

func (c *counter) add() { c.n.Add(1) }

// ownDatabase creates a database for this run, so that the statement,
// transaction and backend CPU figures are the bench's alone. It returns the
// URL to use and a function that drops the database; on a cluster where
// the bench may not create one, it returns the URL it was given.
func (b *bench) ownDatabase(ctx context.Context, given string) (string, func(), error) {
	name := "relay_bench_" + b.runID
	if _, err := b.admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		b.logf("cannot create a database of its own (%v): statements, transactions and PostgreSQL CPU are counted for the whole database", err)
		return given, func() {}, nil
	}
	u, err := url.Parse(given)
	if err != nil {
		return "", nil, fmt.Errorf("parse database URL: %w", err)
	}
	u.Path = "/" + name
	b.dbName = name
	drop := func() {
		if b.keepSchemas {
			b.logf("kept database %s", name)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := b.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			b.logf("drop database %s: %v", name, err)
		}
	}
	return u.String(), drop, nil
}

// setupStatements loads pg_stat_statements in the bench's database when
// the cluster preloads it, and says where stmts/row comes from.
func (b *bench) setupStatements(ctx context.Context, pool *pgxpool.Pool) string {
	var libs string
	if err := pool.QueryRow(ctx, "SHOW shared_preload_libraries").Scan(&libs); err != nil || !strings.Contains(libs, "pg_stat_statements") {
		b.logf("pg_stat_statements is not preloaded (shared_preload_libraries %q): stmts/row counts transactions instead", libs)
		return stmtsFromXacts
	}
	if _, err := pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		b.logf("create extension pg_stat_statements: %v: stmts/row counts transactions instead", err)
		return stmtsFromXacts
	}
	return stmtsFromStatements
}

// snap reads the counters of the bench's database and, for a scenario
// schema, its outbox.
func (b *bench) snap(ctx context.Context, schema string) (pgSnap, error) {
	s := pgSnap{own: b.own.n.Load(), clusterCPU: b.pg.total(), backendCPU: b.backendCPU()}
	q := statementsSQL
	if b.stmtsSource != stmtsFromStatements {
		q = xactsSQL
	}
	b.own.add()
	if err := b.admin.QueryRow(ctx, walLSNSQL).Scan(&s.walLSN); err != nil {
		return s, fmt.Errorf("read WAL position: %w", err)
	}
	b.own.add()
	if err := b.admin.QueryRow(ctx, q).Scan(&s.stmts); err != nil {
		return s, fmt.Errorf("count statements: %w", err)
	}
	st, err := b.statementStats(ctx)
	if err != nil {
		return s, err
	}
	s.statements = st
	if schema != "" {
		b.own.add()
		if err := b.admin.QueryRow(ctx, outboxUpdatesSQL, schema).Scan(&s.outboxUpd, &s.hotUpd); err != nil {
			return s, fmt.Errorf("read outbox update counters: %w", err)
		}
	}
	return s, nil
}

// waitRelayGone waits until no backend other than the bench's own serves
// its database, so that the relay's statistics have been flushed.
func (b *bench) waitRelayGone(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		var n int
		b.own.add()
		if err := b.admin.QueryRow(ctx, otherBackendsSQL).Scan(&n); err != nil || n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			b.logf("%d backends of other clients still serve the bench's database", n)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// busyElsewhere counts the backends busy in other databases of the cluster.
func (b *bench) busyElsewhere(ctx context.Context) int {
	var n int
	b.own.add()
	if err := b.admin.QueryRow(ctx, busyElsewhereSQL).Scan(&n); err != nil {
		return 0
	}
	return n
}

// cost is the per-row cost between two snapshots. relayCPU is the relay's
// CPU over the same span; pgBackends is the CPU of the database's backends
// read just before the relay stopped (after is read once it has gone).
func (b *bench) cost(ctx context.Context, before, after pgSnap, pgBackends map[int]time.Duration, relayCPU time.Duration, rows int) (Cost, error) {
	c := Cost{StmtsSource: b.stmtsSource, OutboxUpdates: after.outboxUpd - before.outboxUpd}
	if rows <= 0 {
		return c, nil
	}
	var wal int64
	b.own.add()
	if err := b.admin.QueryRow(ctx, walDiffSQL, after.walLSN, before.walLSN).Scan(&wal); err != nil {
		return c, fmt.Errorf("WAL difference: %w", err)
	}
	n := float64(rows)
	c.WALBytesPerRow = float64(wal) / n
	stmts := after.stmts - before.stmts
	if b.stmtsSource != stmtsFromStatements {
		// Each of the bench's own queries is a transaction of its own.
		stmts -= after.own - before.own
	}
	c.StmtsPerRow = float64(max(stmts, 0)) / n
	c.RelayUSPerRow = float64(relayCPU.Microseconds()) / n
	if b.dbName != "" && b.pg != nil {
		var sum time.Duration
		for pid, t := range pgBackends {
			sum += t - before.backendCPU[pid]
		}
		v := float64(sum.Microseconds()) / n
		c.PostgresUSPerRow = &v
	}
	if b.pg != nil {
		v := float64((after.clusterCPU - before.clusterCPU).Microseconds()) / n
		c.ClusterUSPerRow = &v
	}
	if c.OutboxUpdates > 0 {
		r := float64(after.hotUpd-before.hotUpd) / float64(c.OutboxUpdates)
		c.HOTRatio = &r
	}
	c.Statements, c.Sequencer = statementCosts(before.statements, after.statements, rows, topStatements)
	return c, nil
}

// backendCPU reads the CPU time of each PostgreSQL backend serving the
// bench's database, by process title ("postgres: user db host(port) ...").
// It is empty when the cluster is not local or the bench shares its
// database.
func (b *bench) backendCPU() map[int]time.Duration {
	out := map[int]time.Duration{}
	if b.pg == nil || b.dbName == "" {
		return out
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	ppid := strconv.Itoa(b.pg.postmaster)
	needle := " " + b.dbName + " "
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := relayproc.StatFields(pid)
		if err != nil || f[1] != ppid {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(strings.ReplaceAll(string(cmd), "\x00", " "), needle) {
			continue
		}
		if t, err := relayproc.CPUTicks(pid, false); err == nil {
			out[pid] = relayproc.TicksToDuration(t)
		}
	}
	return out
}
