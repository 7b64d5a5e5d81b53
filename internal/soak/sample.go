package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/relayproc"
)

// statsSQL reads the outbox's size (tables, indexes and TOAST) and tuple
// counts over the outbox and its partitions when it is partitioned
// (pg_partition_tree lists none for a plain table, hence the union), its
// partitions, River's job table, and the WAL position. The alias keeps it
// apart from the relay's statements.
const statsSQL = `
WITH rels AS (
  SELECT relid, isleaf, level FROM pg_partition_tree('outbox'::regclass)
  UNION SELECT 'outbox'::regclass, true, 0
)
SELECT coalesce(sum(pg_total_relation_size(r.relid)), 0)::bigint,
       coalesce(sum(s.n_dead_tup), 0)::bigint,
       coalesce(sum(s.n_live_tup), 0)::bigint,
       (count(*) FILTER (WHERE r.isleaf AND r.level > 0))::int,
       coalesce(pg_total_relation_size(to_regclass('river_job')), 0)::bigint,
       pg_current_wal_lsn()::text AS soak_marker
  FROM rels r LEFT JOIN pg_stat_user_tables s ON s.relid = r.relid`

// sample is one row of the table.
type sample struct {
	at         time.Duration // since the first insert was due
	phase      string        // "insert" while producers write, then "drain"
	inserted   int64
	insRate    float64 // rows/s inserted over the interval
	delivered  int64
	rate       float64 // rows/s delivered over the interval
	backlog    int64
	rssMiB     float64
	outboxMiB  float64
	jobsMiB    float64
	walPerRow  float64 // NaN when no row was delivered in the interval
	deadTup    int64
	liveTup    int64
	partitions int
	relayCPU   float64 // cores used by the relay over the interval
	load       string
	wal        uint64 // WAL position
	relayCPUAt time.Duration
}

// sampler reads a sample every interval.
type sampler struct {
	admin *pgxpool.Pool
	relay *relayproc.Proc
	led   *ledger
	prod  *producers
	start time.Time
	last  *sample
}

func (s *sampler) take(ctx context.Context, phase string) (sample, error) {
	x := sample{at: time.Since(s.start), phase: phase, inserted: s.prod.inserted.Load(), delivered: s.led.delivered(), load: relayproc.Load1()}
	x.backlog = x.inserted - x.delivered
	u, err := s.relay.Usage()
	if err != nil {
		return x, err
	}
	x.rssMiB, x.relayCPUAt = float64(u.RSSKiB)/1024, u.CPU
	var outbox, jobs int64
	var lsn string
	if err := s.admin.QueryRow(ctx, statsSQL).Scan(&outbox, &x.deadTup, &x.liveTup, &x.partitions, &jobs, &lsn); err != nil {
		return x, fmt.Errorf("read outbox statistics: %w", err)
	}
	x.outboxMiB, x.jobsMiB = float64(outbox)/(1<<20), float64(jobs)/(1<<20)
	if x.wal, err = parseLSN(lsn); err != nil {
		return x, err
	}
	x.walPerRow = math.NaN()
	if p := s.last; p != nil {
		dt := (x.at - p.at).Seconds()
		x.insRate = float64(x.inserted-p.inserted) / dt
		x.rate = float64(x.delivered-p.delivered) / dt
		x.relayCPU = (x.relayCPUAt - p.relayCPUAt).Seconds() / dt
		if d := x.delivered - p.delivered; d > 0 {
			x.walPerRow = float64(x.wal-p.wal) / float64(d)
		}
	}
	s.last = &x
	return x, nil
}

// parseLSN reads a WAL position, "16/B374D848", as a byte offset.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse WAL position %q", s)
	}
	return h<<32 | l, nil
}

// columns of the table: header, width.
var columns = []struct {
	name  string
	width int
}{
	{"elapsed", 8}, {"phase", 6}, {"inserted", 10}, {"ins/s", 6}, {"delivered", 10}, {"del/s", 6}, {"backlog", 8},
	{"RSS MiB", 8}, {"outbox MiB", 10}, {"jobs MiB", 8}, {"WAL B/row", 9}, {"dead tup", 9}, {"live tup", 9},
	{"parts", 5}, {"relay CPU", 9}, {"load", 5},
}

func (x sample) cells() []string {
	wal := "-"
	if !math.IsNaN(x.walPerRow) {
		wal = strconv.FormatFloat(x.walPerRow, 'f', 0, 64)
	}
	parts := "-"
	if x.partitions > 0 {
		parts = strconv.Itoa(x.partitions)
	}
	return []string{
		x.at.Round(time.Second).String(), x.phase, strconv.FormatInt(x.inserted, 10), f0(x.insRate),
		strconv.FormatInt(x.delivered, 10), f0(x.rate), strconv.FormatInt(x.backlog, 10),
		f1(x.rssMiB), f1(x.outboxMiB), f1(x.jobsMiB), wal, strconv.FormatInt(x.deadTup, 10), strconv.FormatInt(x.liveTup, 10),
		parts, fmt.Sprintf("%.2f", x.relayCPU), x.load,
	}
}

func printHeader(out io.Writer) {
	var b strings.Builder
	for i, c := range columns {
		if i > 0 {
			b.WriteString("  ")
		}
		fmt.Fprintf(&b, "%*s", c.width, c.name)
	}
	fmt.Fprintln(out, b.String())
}

func printSample(out io.Writer, x sample) {
	var b strings.Builder
	for i, v := range x.cells() {
		if i > 0 {
			b.WriteString("  ")
		}
		fmt.Fprintf(&b, "%*s", columns[i].width, v)
	}
	fmt.Fprintln(out, b.String())
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
