// Command bench measures the relay against a real PostgreSQL and the fake
// Svix (internal/svixfake) on loopback, and prints a table and a JSON
// document. `make bench` runs it with a database; `make bench ARGS=-help`
// lists the flags.
//
// Scenarios (run in this order; `-scenario NAME`, repeatable, runs only
// those named; `-large` adds realistic-1m):
//
//	river-noop                River's own no-op jobs, inserted then worked
//	                          down in this process with the relay's River
//	                          settings, on the same database: the reference
//	                          the drain rates are divided by.
//	svix-noop                 -rows sends through the relay's SvixSender (the
//	                          Svix Go client) to the fake Svix at 0 ms, as
//	                          many in flight as -concurrency, in this process,
//	                          no database: what a send costs this machine.
//	                          With river-noop it gives the ceiling: the rate
//	                          of a relay whose rows cost a no-op job plus a
//	                          send and nothing more.
//	drain-0ms                 the best case: -rows rows, one per asset over 64
//	                          apps, ANALYZE after the insert, ordering by
//	                          asset, Svix answering at once.
//	realistic-0ms             an outage's backlog: -rows rows, 8 apps × rows/50
//	                          assets × 1–20 rows each (about 6; deterministic
//	                          pseudo-random), written into a table just
//	                          created, no ANALYZE and autoanalyze off on it
//	                          for the run (stale statistics; autovacuum's
//	                          VACUUM runs), ordering by asset;
//	                          the outbox also has a week of older daily
//	                          partitions of delivered rows, as retention
//	                          leaves them.
//	realistic-single-0ms      the same with one row per asset.
//	realistic-unordered-0ms   realistic-0ms with --ordering=off.
//	realistic-50ms            realistic-0ms with Svix answering after 50 ms.
//	realistic-1m              realistic-0ms with -large-rows rows (1M; -large).
//	next-row                  -next-row-keys keys × many rows (fewer keys than
//	                          the relay's concurrency): the delay from a row's
//	                          acceptance by Svix to its successor's.
//	latency                   -latency-rate rows/s (1,000) for -latency-duration,
//	                          single-row autocommit INSERTs from
//	                          -latency-conns connections: commit to Svix.
//	producers                 -producers producers writing rows of a few
//	                          shared assets in random orders, in autocommit
//	                          INSERTs, multi-statement transactions and
//	                          EmitBatch: errors (40P01 deadlocks) and lock
//	                          waits, with the relay running.
//	(not by default)          drain-0ms-unordered, drain-50ms,
//	                          drain-50ms-unordered, realistic-single-unordered-0ms,
//	                          rate-cap (-rate-cap-rows rows with the relay and
//	                          the fake Svix capped at -rate-cap msg/s),
//	                          sequencer (the numbering step, outbox_sequence,
//	                          timed on its own at 1 to 5,000 rows per step
//	                          over a fifth of -rows each: the rate one
//	                          database's serialized step allows).
//
// -replicas 1,2,3 runs each drain scenario (not rate-cap) once per count
// of relay processes, one after the other; a drain with N > 1 relays is
// reported as <scenario>-<N>relays, with the relays' CPU summed, the peak
// RSS of each, and the same exactly-once and per-key order checks.
//
// A drain that has not finished after -drain-cut (30 s) is cut: its rate is
// that of the rows delivered so far, and the tables say so. Every drain
// also reports its PostgreSQL cost per delivered row (pgcost.go): WAL
// bytes, statements (pg_stat_statements when preloaded, else
// transactions), relay and PostgreSQL CPU, and the outbox's HOT updates.
//
// The relay runs as a subprocess built from ./cmd/relay, so its peak RSS
// (VmHWM) and CPU time (utime+stime) are read from /proc and are its own.
// The fake Svix runs in this process; PostgreSQL's CPU is read from /proc
// too when the cluster runs on this machine. Every scenario gets a schema
// of its own (dropped afterwards). The relay logs at -relay-log-level,
// info by default (a JSON line per delivery, written to a file), as it
// runs in production, and its GC trace gives its peak heap. The bench runs
// in a database of its own (relay_bench_<run>, dropped afterwards) when it
// may create one, so that statement and backend CPU counts are its alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/relayproc"
)

type options struct {
	databaseURL      string
	rows             int
	large            bool
	largeRows        int
	drainCut         time.Duration
	nextRowKeys      int
	nextRowRows      int
	latencyRate      float64
	latencyDuration  time.Duration
	latencyConns     int
	producers        int
	producerDuration time.Duration
	producerAssets   int
	producerRowsTx   int
	rateCap          float64
	rateCapRows      int
	concurrency      int
	scenarios        []string
	jsonPath         string
	relayBin         string
	logLevel         string
	profileDir       string
	keepSchemas      bool
	relayEnv         []string
	// replicas lists the relay counts each drain runs with (1 by default).
	replicas []int
}

var allScenarios = []string{
	"river-noop", "svix-noop", "drain-0ms", "drain-0ms-unordered", "realistic-0ms", "realistic-single-0ms", "realistic-unordered-0ms",
	"realistic-single-unordered-0ms", "realistic-50ms", "realistic-1m", "drain-50ms", "drain-50ms-unordered",
	"next-row", "latency", "producers", "rate-cap", "sequencer",
}

// defaultScenarios keeps a run on 2 cores under five minutes even where
// drains are cut: the best case beside the hard cases users hit.
var defaultScenarios = []string{
	"river-noop", "svix-noop", "drain-0ms", "realistic-0ms", "realistic-single-0ms", "realistic-unordered-0ms", "realistic-50ms",
	"next-row", "latency", "producers",
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.databaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL)")
	fs.IntVar(&o.rows, "rows", 50_000, "rows per backlog drain, and no-op jobs of the River reference")
	fs.BoolVar(&o.large, "large", false, "add realistic-1m: the realistic drain with -large-rows rows (takes minutes)")
	fs.IntVar(&o.largeRows, "large-rows", 1_000_000, "rows of realistic-1m")
	fs.DurationVar(&o.drainCut, "drain-cut", 30*time.Second, "cut a drain after this long and rate the rows delivered so far (0: wait for every row)")
	fs.IntVar(&o.nextRowKeys, "next-row-keys", defaultNextRowKeys, "keys of the next-row scenario (fewer than -concurrency)")
	fs.IntVar(&o.nextRowRows, "next-row-rows", 1_000, "rows of the next-row scenario")
	fs.Float64Var(&o.latencyRate, "latency-rate", 1000, "rows/s inserted in the latency scenario")
	fs.DurationVar(&o.latencyDuration, "latency-duration", 10*time.Second, "length of the latency scenario")
	fs.IntVar(&o.latencyConns, "latency-conns", 8, "inserting connections in the latency scenario")
	fs.IntVar(&o.producers, "producers", 8, "concurrent producers of the producers scenario")
	fs.DurationVar(&o.producerDuration, "producer-duration", 3*time.Second, "length of each producer mode")
	fs.IntVar(&o.producerAssets, "producer-assets", 6, "assets the producers share")
	fs.IntVar(&o.producerRowsTx, "producer-rows", 3, "rows (of distinct assets) per producer transaction")
	fs.Float64Var(&o.rateCap, "rate-cap", 800, "msg/s cap of the rate-cap scenario (relay and fake Svix)")
	fs.IntVar(&o.rateCapRows, "rate-cap-rows", 20_000, "backlog of the rate-cap scenario")
	fs.IntVar(&o.concurrency, "concurrency", relayConcurrency, "RELAY_CONCURRENCY, and MaxWorkers of the River reference")
	scen := fs.String("scenarios", strings.Join(defaultScenarios, ","), "comma-separated scenarios to run, of: "+strings.Join(allScenarios, ", "))
	var only listFlag
	fs.Var(&only, "scenario", "run only this scenario (repeatable; overrides -scenarios)")
	fs.StringVar(&o.jsonPath, "json", "", "write the JSON document to this file instead of stdout")
	fs.StringVar(&o.relayBin, "relay-bin", "", "relay binary to run (default: go build ./cmd/relay into a temporary directory)")
	fs.StringVar(&o.logLevel, "relay-log-level", "info", "RELAY_LOG_LEVEL of the relay (info, the default, logs a line per delivery to a file)")
	fs.StringVar(&o.profileDir, "cpuprofile-dir", "", "write a CPU profile of the relay per scenario into this directory (RELAY_CPU_PROFILE)")
	fs.BoolVar(&o.keepSchemas, "keep-schemas", false, "keep the bench's database and each scenario's schema for inspection")
	replicas := fs.String("replicas", "1", "relay processes per drain, comma-separated: each drain scenario (not rate-cap, latency or producers) runs once per count, "+
		"in this order; a drain with N > 1 is reported as <scenario>-<N>relays (e.g. -replicas 1,2,3)")
	fs.Var((*listFlag)(&o.relayEnv), "relay-env", "extra NAME=value for the relay's environment (repeatable), e.g. RELAY_DB_MAX_CONNS=30")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (flags only; see -help)", fs.Arg(0))
	}
	if o.databaseURL == "" {
		return o, fmt.Errorf("no database: set DATABASE_URL or -database-url (make bench provides one)")
	}
	reps, err := parseReplicas(*replicas)
	if err != nil {
		return o, err
	}
	o.replicas = reps
	list := strings.Split(*scen, ",")
	if len(only) > 0 {
		list = only
	} else if o.large {
		list = append(list, "realistic-1m")
	}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" || contains(o.scenarios, s) {
			continue
		}
		if !contains(allScenarios, s) {
			return o, fmt.Errorf("-scenario: unknown scenario %q; known: %s", s, strings.Join(allScenarios, ", "))
		}
		o.scenarios = append(o.scenarios, s)
	}
	switch {
	case o.rows < 1 || o.largeRows < 1 || o.rateCapRows < 2 || o.nextRowRows < 2:
		return o, fmt.Errorf("-rows and -large-rows must be at least 1, -rate-cap-rows and -next-row-rows at least 2")
	case o.nextRowKeys < 1 || o.nextRowKeys >= o.nextRowRows:
		return o, fmt.Errorf("-next-row-keys must be at least 1 and below -next-row-rows, got %d", o.nextRowKeys)
	case o.drainCut < 0:
		return o, fmt.Errorf("-drain-cut must not be negative, got %s", o.drainCut)
	case o.latencyRate <= 0 || o.latencyDuration <= 0 || o.latencyConns < 1:
		return o, fmt.Errorf("-latency-rate, -latency-duration and -latency-conns must be positive")
	case o.producers < 1 || o.producerDuration <= 0 || o.producerRowsTx < 1 || o.producerAssets < o.producerRowsTx:
		return o, fmt.Errorf("-producers, -producer-duration and -producer-rows must be positive, and -producer-assets at least -producer-rows")
	case o.rateCap <= 0 || o.concurrency < 1:
		return o, fmt.Errorf("-rate-cap and -concurrency must be positive")
	}
	return o, nil
}

// maxReplicas bounds -replicas: each replica holds RELAY_DB_MAX_CONNS + 2
// connections.
const maxReplicas = 8

func parseReplicas(v string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > maxReplicas {
			return nil, fmt.Errorf("-replicas: %q is not a count from 1 to %d", f, maxReplicas)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// replicaName names a drain run with n relays.
func replicaName(scenario string, n int) string {
	if n == 1 {
		return scenario
	}
	return fmt.Sprintf("%s-%drelays", scenario, n)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// bench holds what the scenarios share.
type bench struct {
	opts        options
	databaseURL string
	admin       *pgxpool.Pool
	relayBin    string
	tmp         string
	runID       string
	cores       int
	pg          *pgCPU
	keepSchemas bool
	// dbName is the bench's own database; empty when it shares the given one.
	dbName string
	// stmtsSource says what stmts/row counts (pgcost.go).
	stmtsSource string
	// own counts the bench's statements in its database.
	own counter
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// adminPool connects the bench's own two connections.
func adminPool(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = 2
	cfg.ConnConfig.RuntimeParams["application_name"] = "relay-bench"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return pool, nil
}

// checkpoint runs CHECKPOINT before a scenario. A drain writes ~100 MB of
// WAL, so after a few of them max_wal_size starts a checkpoint that runs,
// spread out, through the scenarios that follow; finishing it here lets
// each scenario start as after any other checkpoint, whatever ran before
// it (in four alternating pairs of the default drains followed by the
// latency scenario, its p99 was lower with it in all four). Without the
// privilege (superuser or pg_checkpoint) it says so and goes on.
func (b *bench) checkpoint(ctx context.Context) {
	t := time.Now()
	if _, err := b.admin.Exec(ctx, "CHECKPOINT"); err != nil {
		b.logf("CHECKPOINT before the scenario: %v (a checkpoint may run during it)", err)
		return
	}
	b.logf("CHECKPOINT before the scenario took %s", time.Since(t).Round(10*time.Millisecond))
}

// runScenario runs one scenario and adds its result to rep.
func (b *bench) runScenario(ctx context.Context, name string, rep *report) error {
	o := b.opts
	realistic := drainSpec{name: name, rows: o.rows, layout: layoutRealistic, ordering: "asset", pastPartitions: weekOfPartitions}
	best := drainSpec{name: name, rows: o.rows, layout: layoutDistinct, analyze: true, ordering: "asset"}
	var spec drainSpec
	switch name {
	case "river-noop":
		r, err := b.riverNoop(ctx, o.rows)
		rep.River = &r
		return err
	case "svix-noop":
		r, err := b.svixNoop(ctx, o.rows)
		rep.Svix = &r
		return err
	case "latency":
		r, err := b.latency(ctx)
		rep.Latency = &r
		return err
	case "producers":
		r, err := b.producers(ctx)
		rep.Producers = &r
		return err
	case "sequencer":
		r, err := b.sequencer(ctx)
		rep.Sequencer = &r
		return err
	case "drain-0ms":
		spec = best
	case "drain-0ms-unordered":
		spec = best
		spec.ordering = "off"
	case "drain-50ms":
		spec = best
		spec.svixLatency = 50 * time.Millisecond
	case "drain-50ms-unordered":
		spec = best
		spec.svixLatency, spec.ordering = 50*time.Millisecond, "off"
	case "realistic-0ms":
		spec = realistic
	case "realistic-single-0ms":
		spec = realistic
		spec.layout = layoutSingle
	case "realistic-unordered-0ms":
		spec = realistic
		spec.ordering = "off"
	case "realistic-single-unordered-0ms":
		spec = realistic
		spec.layout, spec.ordering = layoutSingle, "off"
	case "realistic-50ms":
		spec = realistic
		spec.svixLatency = 50 * time.Millisecond
	case "realistic-1m":
		spec = realistic
		spec.rows = o.largeRows
	case "next-row":
		spec = realistic
		spec.rows, spec.layout, spec.keys = o.nextRowRows, layoutFewKeys, o.nextRowKeys
	case "rate-cap":
		spec = drainSpec{name: name, rows: o.rateCapRows, layout: layoutDistinct, analyze: true, ordering: "asset", rateLimit: o.rateCap, replicas: 1}
		r, err := b.drain(ctx, spec)
		rep.RateCap = &r
		return err
	default:
		return fmt.Errorf("unknown scenario %q", name)
	}
	for _, n := range o.replicas {
		spec := spec
		spec.name, spec.replicas = replicaName(name, n), n
		if n > 1 {
			b.logf("scenario %s (load average %s)", spec.name, relayproc.Load1())
		}
		r, err := b.drain(ctx, spec)
		rep.Drains = append(rep.Drains, r)
		if err != nil {
			return err
		}
	}
	return nil
}

// run runs the bench and prints its tables, and the JSON document unless
// -json names a file, to out.
func run(ctx context.Context, args []string, out io.Writer) (err error) {
	o, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	began := time.Now()
	b := &bench{opts: o, databaseURL: o.databaseURL, cores: runtime.NumCPU(), keepSchemas: o.keepSchemas,
		runID: fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)}
	if b.tmp, err = os.MkdirTemp("", "relay-bench-"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			b.logf("the relay's logs are kept in %s", b.tmp)
			return
		}
		_ = os.RemoveAll(b.tmp)
	}()
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}

	if b.admin, err = adminPool(ctx, o.databaseURL); err != nil {
		return err
	}
	defer func() { b.admin.Close() }()
	url, dropDB, err := b.ownDatabase(ctx, o.databaseURL)
	if err != nil {
		return err
	}
	if b.dbName != "" {
		given := b.admin
		if b.admin, err = adminPool(ctx, url); err != nil {
			return err
		}
		defer func() {
			b.admin.Close()
			b.admin = given
			dropDB()
		}()
	}
	b.databaseURL = url
	b.stmtsSource = b.setupStatements(ctx, b.admin)

	rep := &report{Settings: settingsOf(o)}
	if rep.Machine, err = machineOf(ctx, b); err != nil {
		return err
	}
	rep.Machine.StatementsSource = b.stmtsSource
	b.pg = newPGCPU(rep.Machine.pgDataDir)
	b.logf("%d CPUs (%s), PostgreSQL %s, load average %s", rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.PostgresVersion, rep.Machine.LoadAvg)

	b.relayBin = o.relayBin
	if b.relayBin == "" {
		b.logf("building the relay")
		if b.relayBin, err = relayproc.Build(ctx, b.tmp); err != nil {
			return err
		}
	}

	for _, s := range o.scenarios {
		b.checkpoint(ctx)
		b.logf("scenario %s (load average %s)", s, relayproc.Load1())
		t := time.Now()
		if err := b.runScenario(ctx, s, rep); err != nil {
			return fmt.Errorf("scenario %s: %w", s, err)
		}
		b.logf("scenario %s done in %s", s, time.Since(t).Round(100*time.Millisecond))
	}
	rep.Machine.LoadAvgEnd = relayproc.LoadAvg()
	rep.TotalSeconds = time.Since(began).Seconds()
	rep.finish()
	rep.printTable(out)
	return rep.writeJSON(out, o.jsonPath)
}
