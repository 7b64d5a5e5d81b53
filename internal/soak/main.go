// Command soak is make soak: a long run of the relay at a steady rate. It
// inserts -rows outbox rows (10M by default) over time, at -rate rows/s,
// from several producer connections writing transactions of a few rows
// each (many assets of several apps, several events per asset, all eight
// event types), while the relay binary built from the checkout (`relay
// run`, its defaults, ordering by asset) drains them into the fake Svix
// (internal/svixfake, in this process) and its retention removes delivered
// rows.
//
// Every -interval it prints one row of a table: rows inserted and
// delivered, the delivery rate over the interval, the backlog, the relay's
// RSS, the outbox's size (table, indexes and TOAST, over its partitions
// when it is partitioned), River's job table size, WAL bytes per delivered
// row over the interval, the outbox's dead tuples and its partitions. At
// the end it says whether each series stayed flat (the last quarter's mean
// against the second quarter's, within a stated tolerance) and checks that
// every row reached Svix exactly once, in order per asset, and is marked
// delivered; it exits 1 when one did not. -markdown writes the result as a
// Markdown file for the README.
//
// The relay's settings pass through one place: -relay-args (the arguments
// after `relay run`), -partition-interval and -partitions-ahead (the
// outbox's partition settings, applied after `relay migrate`) and
// -setup-sql (a file of SQL run after them, before the relay starts). The run works in a database of its
// own (relay_soak_<run>, dropped afterwards unless -keep).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// defaultRelayArgs are the arguments after `relay run`: the relay's
// defaults, with days compressed into minutes so that a run shows
// retention at work many times: with -partition-interval's 2-minute
// partitions, a partition whose rows were all delivered more than 5
// minutes ago is dropped by a retention run every 30 s.
const defaultRelayArgs = "--retention=5m --prune-interval=30s"

type options struct {
	databaseURL  string
	rows         int64
	rate         float64
	producers    int
	maxRowsTx    int
	apps         int
	liveAssets   int
	maxEvents    int
	interval     time.Duration
	drainTimeout time.Duration
	relayArgs    string
	setupSQL     string
	partInterval time.Duration
	partsAhead   int
	relayBin     string
	logLevel     string
	svixLatency  time.Duration
	svixMemory   time.Duration
	markdown     string
	keep         bool
	requireFlat  bool
	tolerance    float64
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.databaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL; the run creates a database of its own there (default $DATABASE_URL)")
	fs.Int64Var(&o.rows, "rows", 10_000_000, "rows to insert")
	fs.Float64Var(&o.rate, "rate", 2000, "rows/s inserted (a steady schedule; a bit below what the relay drains on 2 cores)")
	fs.IntVar(&o.producers, "producers", 8, "producer connections")
	fs.IntVar(&o.maxRowsTx, "rows-per-tx", 4, "most rows per producer transaction (1 to this, uniformly; rows of distinct assets)")
	fs.IntVar(&o.apps, "apps", 16, "apps (Svix applications) the assets belong to")
	fs.IntVar(&o.liveAssets, "live-assets", 32, "assets each producer writes events of at a time; a finished asset is replaced by a new one")
	fs.IntVar(&o.maxEvents, "max-events", 11, "most events per asset (1 to this, uniformly)")
	fs.DurationVar(&o.interval, "interval", 0, "time between table rows (default 30s, shorter for a short run so that it prints at least 20)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Minute, "how long to wait, after the last insert, for every row to reach Svix and be marked delivered")
	fs.StringVar(&o.relayArgs, "relay-args", defaultRelayArgs, "arguments after 'relay run' (space-separated), e.g. the partition interval and --retention")
	fs.StringVar(&o.setupSQL, "setup-sql", "", "file of SQL run after 'relay migrate', before the relay starts (e.g. partition settings)")
	fs.DurationVar(&o.partInterval, "partition-interval", 2*time.Minute, "outbox_partition_config.partition_interval for the run (the fresh database's empty partitions are remade at it before the relay starts); 0 keeps the default (1 day)")
	fs.IntVar(&o.partsAhead, "partitions-ahead", 3, "outbox_partition_config.partitions_ahead for the run, with -partition-interval")
	fs.StringVar(&o.relayBin, "relay-bin", "", "relay binary to run (default: go build ./cmd/relay into a temporary directory)")
	fs.StringVar(&o.logLevel, "relay-log-level", "warn", "RELAY_LOG_LEVEL of the relay (info logs a line per delivery: gigabytes over 10M rows)")
	fs.DurationVar(&o.svixLatency, "svix-latency", 0, "how long the fake Svix takes to answer each message")
	fs.DurationVar(&o.svixMemory, "svix-memory", 3*time.Minute, "how long the fake Svix remembers a message, its eventId and idempotency key (bounds its memory; a resend after this is a new message, counted as a duplicate)")
	fs.StringVar(&o.markdown, "markdown", "", "also write the result as Markdown to this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the run's database for inspection")
	fs.BoolVar(&o.requireFlat, "require-flat", false, "exit 1 when a series did not stay flat, too")
	fs.Float64Var(&o.tolerance, "tolerance", 0.25, "flat: the last quarter's mean within this fraction of the second quarter's (or within the series' stated absolute slack)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected argument %q (flags only; see -help)", fs.Arg(0))
	case o.partInterval != 0 && (o.partInterval < time.Minute || o.partInterval%time.Second != 0):
		return o, fmt.Errorf("-partition-interval must be 0 or whole seconds of at least 1m, got %s", o.partInterval)
	case o.partInterval != 0 && (o.partsAhead < 1 || o.partsAhead > 1000):
		return o, fmt.Errorf("-partitions-ahead must be 1 to 1000, got %d", o.partsAhead)
	case o.databaseURL == "":
		return o, errors.New("no database: set DATABASE_URL or -database-url (make soak starts a throwaway cluster)")
	case o.rows < 1 || o.rate <= 0 || o.producers < 1 || o.maxRowsTx < 1 || o.apps < 1 || o.maxEvents < 1:
		return o, errors.New("-rows, -rate, -producers, -rows-per-tx, -apps and -max-events must be positive")
	case o.liveAssets < o.maxRowsTx:
		return o, fmt.Errorf("-live-assets (%d) must be at least -rows-per-tx (%d): a transaction writes rows of distinct assets", o.liveAssets, o.maxRowsTx)
	case o.interval < 0 || o.drainTimeout <= 0 || o.svixMemory <= 0 || o.tolerance <= 0:
		return o, errors.New("-interval must not be negative; -drain-timeout, -svix-memory and -tolerance must be positive")
	}
	if o.interval == 0 {
		// At least 20 rows over the insert phase, at most every 30 s, at
		// least every 5 s.
		planned := time.Duration(float64(o.rows) / o.rate * float64(time.Second))
		o.interval = max(5*time.Second, min(30*time.Second, (planned/20).Truncate(time.Second)))
	}
	return o, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(2)
	}
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
}

// relayArgList splits -relay-args into arguments.
func relayArgList(s string) []string { return strings.Fields(s) }
