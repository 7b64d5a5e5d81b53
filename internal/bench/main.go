// Command bench measures the relay against a real PostgreSQL and the fake
// Svix (internal/svixfake) on loopback, and prints a table and a JSON
// document. `make bench` runs it with a database; `make bench ARGS=-help`
// lists the flags.
//
// Scenarios (-scenarios, in this order):
//
//	river-noop           River's own throughput: n no-op jobs inserted, then
//	                     worked down in this process with the relay's River
//	                     settings, on the same database. The reference the
//	                     drain rates are divided by.
//	drain-0ms            -rows rows inserted with the relay stopped, timed
//	                     from the relay's start to Svix holding them all;
//	                     Svix answers at once; ordering by asset (default).
//	drain-0ms-unordered  the same with --ordering=off.
//	drain-50ms           Svix answers after 50 ms; ordering by asset.
//	drain-50ms-unordered the same with --ordering=off (not run by default).
//	latency              -latency-rate rows/s for -latency-duration, single-row
//	                     autocommit INSERTs from -latency-conns connections;
//	                     commit (as the inserting client sees it) to Svix
//	                     receiving the request.
//	rate-cap             -rate-cap-rows rows with the relay capped at -rate-cap
//	                     msg/s and the fake Svix enforcing the same limit.
//
// The relay runs as a subprocess built from ./cmd/relay, so its peak RSS
// (VmHWM) and CPU time (utime+stime) are read from /proc and are its own.
// The fake Svix runs in this process; PostgreSQL's CPU is read from /proc
// too when the cluster runs on this machine. Every scenario gets a schema
// of its own (dropped afterwards). The relay logs at -relay-log-level,
// info by default (a JSON line per delivery, written to a file), as it
// runs in production.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

type options struct {
	databaseURL     string
	rows            int
	latencyRate     float64
	latencyDuration time.Duration
	latencyConns    int
	rateCap         float64
	rateCapRows     int
	concurrency     int
	scenarios       []string
	jsonPath        string
	relayBin        string
	logLevel        string
	profileDir      string
	keepSchemas     bool
	relayEnv        []string
}

var allScenarios = []string{"river-noop", "drain-0ms", "drain-0ms-unordered", "drain-50ms", "drain-50ms-unordered", "latency", "rate-cap"}

// defaultScenarios leaves out drain-50ms-unordered to stay well under five
// minutes: ordering's cost shows most at 0 ms, which runs both ways.
var defaultScenarios = []string{"river-noop", "drain-0ms", "drain-0ms-unordered", "drain-50ms", "latency", "rate-cap"}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.databaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL)")
	fs.IntVar(&o.rows, "rows", 50_000, "rows per backlog drain, and no-op jobs of the River reference")
	fs.Float64Var(&o.latencyRate, "latency-rate", 300, "rows/s inserted in the latency scenario")
	fs.DurationVar(&o.latencyDuration, "latency-duration", 20*time.Second, "length of the latency scenario")
	fs.IntVar(&o.latencyConns, "latency-conns", 4, "inserting connections in the latency scenario")
	fs.Float64Var(&o.rateCap, "rate-cap", 800, "msg/s cap of the rate-cap scenario (relay and fake Svix)")
	fs.IntVar(&o.rateCapRows, "rate-cap-rows", 20_000, "backlog of the rate-cap scenario")
	fs.IntVar(&o.concurrency, "concurrency", relayConcurrency, "RELAY_CONCURRENCY, and MaxWorkers of the River reference")
	scen := fs.String("scenarios", strings.Join(defaultScenarios, ","), "comma-separated scenarios to run, of: "+strings.Join(allScenarios, ", "))
	fs.StringVar(&o.jsonPath, "json", "", "write the JSON document to this file instead of stdout")
	fs.StringVar(&o.relayBin, "relay-bin", "", "relay binary to run (default: go build ./cmd/relay into a temporary directory)")
	fs.StringVar(&o.logLevel, "relay-log-level", "info", "RELAY_LOG_LEVEL of the relay (info, the default, logs a line per delivery to a file)")
	fs.StringVar(&o.profileDir, "cpuprofile-dir", "", "write a CPU profile of the relay per scenario into this directory (RELAY_CPU_PROFILE)")
	fs.BoolVar(&o.keepSchemas, "keep-schemas", false, "keep each scenario's schema for inspection")
	fs.Var((*listFlag)(&o.relayEnv), "relay-env", "extra NAME=value for the relay's environment (repeatable), e.g. RELAY_DB_MAX_CONNS=30")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.databaseURL == "" {
		return o, fmt.Errorf("no database: set DATABASE_URL or -database-url (make bench provides one)")
	}
	for s := range strings.SplitSeq(*scen, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !contains(allScenarios, s) {
			return o, fmt.Errorf("-scenarios: unknown scenario %q; known: %s", s, strings.Join(allScenarios, ", "))
		}
		o.scenarios = append(o.scenarios, s)
	}
	switch {
	case o.rows < 1 || o.rateCapRows < 2:
		return o, fmt.Errorf("-rows must be at least 1 and -rate-cap-rows at least 2")
	case o.latencyRate <= 0 || o.latencyDuration <= 0 || o.latencyConns < 1:
		return o, fmt.Errorf("-latency-rate, -latency-duration and -latency-conns must be positive")
	case o.rateCap <= 0 || o.concurrency < 1:
		return o, fmt.Errorf("-rate-cap and -concurrency must be positive")
	}
	return o, nil
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
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) (err error) {
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

	cfg, err := pgxpool.ParseConfig(o.databaseURL)
	if err != nil {
		return fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = 2
	if b.admin, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer b.admin.Close()

	rep := &report{Settings: settingsOf(o)}
	if rep.Machine, err = machineOf(ctx, b); err != nil {
		return err
	}
	b.pg = newPGCPU(rep.Machine.pgDataDir)
	b.logf("%d CPUs (%s), PostgreSQL %s, load average %s", rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.PostgresVersion, rep.Machine.LoadAvg)

	b.relayBin = o.relayBin
	if b.relayBin == "" {
		b.logf("building the relay")
		if b.relayBin, err = buildRelay(ctx, b.tmp); err != nil {
			return err
		}
	}

	for _, s := range o.scenarios {
		b.logf("scenario %s", s)
		t := time.Now()
		switch s {
		case "river-noop":
			var r DrainResult
			r, err = b.riverNoop(ctx, o.rows)
			rep.River = &r
		case "drain-0ms", "drain-0ms-unordered", "drain-50ms", "drain-50ms-unordered":
			lat := time.Duration(0)
			if strings.HasPrefix(s, "drain-50ms") {
				lat = 50 * time.Millisecond
			}
			ordering := "asset"
			if strings.HasSuffix(s, "-unordered") {
				ordering = "off"
			}
			var r DrainResult
			r, err = b.drain(ctx, s, o.rows, lat, ordering, 0)
			rep.Drains = append(rep.Drains, r)
		case "latency":
			var r LatencyResult
			r, err = b.latency(ctx)
			rep.Latency = &r
		case "rate-cap":
			var r DrainResult
			r, err = b.drain(ctx, s, o.rateCapRows, 0, "asset", o.rateCap)
			rep.RateCap = &r
		}
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s, err)
		}
		b.logf("scenario %s done in %s", s, time.Since(t).Round(100*time.Millisecond))
	}
	rep.TotalSeconds = time.Since(began).Seconds()
	rep.finish()
	rep.printTable(os.Stdout)
	return rep.writeJSON(o.jsonPath)
}
