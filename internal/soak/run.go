package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/relayproc"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// settingsSQL reads what the figures depend on: the server and its
// durability settings.
const settingsSQL = `SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit'),
       current_setting('full_page_writes'), current_setting('autovacuum'), current_setting('shared_buffers'),
       current_setting('max_wal_size') AS soak_marker`

// outboxStateSQL counts the rows left in the outbox: not yet marked
// delivered, failed, and all.
const outboxStateSQL = `SELECT count(*) FILTER (WHERE delivered_at IS NULL), count(*) FILTER (WHERE failed_at IS NOT NULL),
       count(*) AS soak_marker FROM outbox`

// result is a whole run.
type result struct {
	o                         options
	header                    []string // what ran, where
	samples                   []sample
	insertSecs                float64
	drainSecs                 float64 // from the last insert to the last row at Svix
	counts                    ledgerCounts
	undelivered, failed, left int64
	status409                 int64
	prodErrors                map[string]int
	retries                   int64
	txs                       int64
	relayExit                 error
	warn, errs                int
	peakHeap                  float64
	peakRSS                   float64
	selfPeakRSS               float64  // this process: producers, fake Svix, ledger
	problems                  []string // correctness failures
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "soak: "+format+"\n", args...) }

// run runs the soak and prints its table and summary to out. It returns an
// error when the run could not be made or a check failed.
func run(ctx context.Context, o options, out io.Writer) (err error) {
	runID := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffff)
	tmp, err := os.MkdirTemp("", "relay-soak-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			logf("the relay's logs are kept in %s", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()

	admin, err := connect(ctx, o.databaseURL)
	if err != nil {
		return err
	}
	defer admin.Close()
	res := &result{o: o}
	var version, fsync, syncCommit, fpw, autovac, sharedBuf, maxWAL string
	if err := admin.QueryRow(ctx, settingsSQL).Scan(&version, &fsync, &syncCommit, &fpw, &autovac, &sharedBuf, &maxWAL); err != nil {
		return fmt.Errorf("read server settings: %w", err)
	}

	dbName := "relay_soak_" + runID
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{dbName}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", dbName, err)
	}
	defer func() {
		if o.keep {
			logf("kept database %s", dbName)
			return
		}
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := admin.Exec(dctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{dbName}.Sanitize()+" WITH (FORCE)"); err != nil {
			logf("drop database %s: %v", dbName, err)
		}
	}()
	u, err := url.Parse(o.databaseURL)
	if err != nil {
		return fmt.Errorf("parse database URL: %w", err)
	}
	u.Path = "/" + dbName
	dbURL := u.String()

	bin := o.relayBin
	if bin == "" {
		logf("building the relay")
		if bin, err = relayproc.Build(ctx, tmp); err != nil {
			return err
		}
	}
	env := []string{"DATABASE_URL=" + dbURL}
	migrate := exec.CommandContext(ctx, bin, "migrate")
	migrate.Env = append(os.Environ(), env...)
	if b, err := migrate.CombinedOutput(); err != nil {
		return fmt.Errorf("relay migrate: %w\n%s", err, b)
	}
	db, err := connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	setup := "none"
	if o.partInterval != 0 {
		if err := setPartitions(ctx, db, o.partInterval, o.partsAhead); err != nil {
			return err
		}
		setup = fmt.Sprintf("partitions of %s, %d ahead", o.partInterval, o.partsAhead)
	}
	if o.setupSQL != "" {
		sql, err := os.ReadFile(o.setupSQL)
		if err != nil {
			return fmt.Errorf("-setup-sql: %w", err)
		}
		if _, err := db.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("-setup-sql %s: %w", o.setupSQL, err)
		}
		setup += "; " + o.setupSQL
	}

	led := newLedger(o.rows)
	fake, err := svixfake.New(svixfake.Config{
		MaxRecordedRequests: -1,
		MessageRetention:    o.svixMemory,
		IdempotencyTTL:      o.svixMemory,
		OnMessage:           led.onMessage,
	})
	if err != nil {
		return err
	}
	if err := fake.Start("127.0.0.1:0"); err != nil {
		return err
	}
	defer fake.Close()
	fake.SetLatency(o.svixLatency, 0)

	args := append([]string{"run", "--http-addr="}, relayArgList(o.relayArgs)...)
	relayEnv := append(env,
		"SVIX_AUTH_TOKEN="+svixfake.DefaultToken,
		"SVIX_SERVER_URL="+fake.URL(),
		"RELAY_LOG_LEVEL="+o.logLevel,
		"GODEBUG=gctrace=1", // the runtime's GC trace, in the log: the relay's peak heap
	)
	relay, err := relayproc.Start(bin, args, relayEnv, filepath.Join(tmp, "relay.log"))
	if err != nil {
		return err
	}
	defer func() {
		if !relay.Dead() {
			_ = relay.Stop(time.Minute)
		}
	}()

	prod, err := newProducers(ctx, o, runID, dbURL)
	if err != nil {
		return err
	}
	defer prod.close()

	planned := time.Duration(float64(o.rows) / o.rate * float64(time.Second))
	res.header = []string{
		fmt.Sprintf("rows %d at %.0f rows/s (%s planned), %d producer connections, transactions of 1-%d rows of distinct assets, %d apps, %d live assets per producer, 1-%d events per asset, all 8 event types",
			o.rows, o.rate, planned.Round(time.Second), o.producers, o.maxRowsTx, o.apps, o.liveAssets, o.maxEvents),
		fmt.Sprintf("relay: relay %s (RELAY_LOG_LEVEL=%s); setup SQL: %s; fake Svix in process, %s per message, remembers messages %s",
			strings.Join(args, " "), o.logLevel, setup, o.svixLatency, o.svixMemory),
		fmt.Sprintf("PostgreSQL %s: fsync %s, synchronous_commit %s, full_page_writes %s, autovacuum %s, shared_buffers %s, max_wal_size %s; database %s of its own",
			version, fsync, syncCommit, fpw, autovac, sharedBuf, maxWAL, dbName),
		fmt.Sprintf("machine: %d CPUs (%s), %s, load average %s at the start", runtime.NumCPU(), relayproc.ProcField("/proc/cpuinfo", "model name"), memTotal(), relayproc.LoadAvg()),
		fmt.Sprintf("every %s; WAL is cluster-wide (the producers' inserts, the relay's updates, River's jobs and retention's deletes) per row delivered", o.interval),
	}
	for _, h := range res.header {
		fmt.Fprintln(out, h)
	}
	fmt.Fprintln(out)
	printHeader(out)

	smp := &sampler{admin: db, relay: relay, led: led, prod: prod, start: time.Now()}
	if _, err := smp.take(ctx, "insert"); err != nil {
		return err
	}
	smp.start = time.Now()
	smp.last.at = 0
	pctx, stopProducers := context.WithCancel(ctx)
	defer stopProducers()
	prodDone := make(chan error, 1)
	go func() { prodDone <- prod.run(pctx) }()

	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	phase := "insert"
	var insertEnd, drained time.Time
	var drainDeadline <-chan time.Time
	record := func() error {
		x, err := smp.take(ctx, phase)
		if err != nil {
			return err
		}
		res.samples = append(res.samples, x)
		printSample(out, x)
		return nil
	}
	for drained.IsZero() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-relay.Exited():
			return fmt.Errorf("the relay exited during the run: %v", relay.ExitErr())
		case err := <-prodDone:
			if err != nil {
				return err
			}
			insertEnd = time.Now()
			res.insertSecs = insertEnd.Sub(smp.start).Seconds()
			if err := record(); err != nil { // the last row of the insert phase
				return err
			}
			phase = "drain"
			drainDeadline = time.After(o.drainTimeout)
			tick.Reset(o.interval)
		case <-tick.C:
			if err := record(); err != nil {
				return err
			}
		case <-poll.C:
			if phase == "drain" && led.delivered() >= o.rows {
				drained = time.Now()
			}
		case <-drainDeadline:
			c := led.counts()
			res.problems = append(res.problems, fmt.Sprintf("%d of %d rows had not reached Svix %s after the last insert", c.missing, o.rows, o.drainTimeout))
			drained = time.Now()
		}
	}
	if err := record(); err != nil {
		return err
	}
	res.drainSecs = drained.Sub(insertEnd).Seconds()

	// The relay records each outcome after Svix answered: wait for the
	// outbox to say every row is delivered.
	deadline := insertEnd.Add(o.drainTimeout)
	for {
		if err := db.QueryRow(ctx, outboxStateSQL).Scan(&res.undelivered, &res.failed, &res.left); err != nil {
			return fmt.Errorf("count rows left in the outbox: %w", err)
		}
		if res.undelivered == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	if u, err := relay.Usage(); err == nil {
		res.peakRSS = float64(u.PeakRSSKiB) / 1024
	}
	if u, err := relayproc.ReadUsage(os.Getpid()); err == nil {
		res.selfPeakRSS = float64(u.PeakRSSKiB) / 1024
	}
	res.relayExit = relay.Stop(time.Minute)
	res.warn, res.errs, res.peakHeap = relay.LogSummary()
	res.counts = led.counts()
	res.status409 = fake.StatusCount(409)
	res.prodErrors, res.retries, res.txs = prod.failures(), prod.retries.Load(), prod.txs.Load()
	res.check()

	res.printSummary(out)
	if o.markdown != "" {
		if err := os.WriteFile(o.markdown, []byte(res.markdownText()), 0o644); err != nil {
			return fmt.Errorf("-markdown: %w", err)
		}
		logf("wrote %s", o.markdown)
	}
	if len(res.problems) > 0 {
		return errors.New("FAIL: " + strings.Join(res.problems, "; "))
	}
	if o.requireFlat {
		if notFlat := res.notFlat(); len(notFlat) > 0 {
			return fmt.Errorf("not flat (-require-flat): %s", strings.Join(notFlat, ", "))
		}
	}
	return nil
}

// connect opens a small pool of the soak's own connections.
func connect(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = 2
	cfg.ConnConfig.RuntimeParams["application_name"] = "relay-soak"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return pool, nil
}

// check lists what makes the run a failure.
func (r *result) check() {
	c, rows := r.counts, r.o.rows
	if c.duplicates > 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d rows reached Svix more than once", c.duplicates))
	}
	if c.missing > 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d of %d rows never reached Svix", c.missing, rows))
	}
	if c.unknown > 0 {
		r.problems = append(r.problems, fmt.Sprintf("Svix holds %d messages that name no row of this run", c.unknown))
	}
	if c.messages != rows {
		r.problems = append(r.problems, fmt.Sprintf("Svix holds %d messages for %d rows", c.messages, rows))
	}
	if c.outOfOrder > 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d rows reached Svix before an earlier row of their asset", c.outOfOrder))
	}
	if r.undelivered > 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d rows are not marked delivered in the outbox", r.undelivered))
	}
	if r.failed > 0 {
		r.problems = append(r.problems, fmt.Sprintf("%d rows are marked failed in the outbox", r.failed))
	}
	if r.relayExit != nil {
		r.problems = append(r.problems, fmt.Sprintf("on SIGTERM: %v", r.relayExit))
	}
}

// remakePartitionsSQL gives the fresh database's partitions (empty, made by
// relay migrate at the default interval) way to partitions of the run's
// interval: the daily ones ahead would otherwise take every row of a run
// shorter than a week. Only empty partitions are dropped.
const remakePartitionsSQL = `
DO $$
DECLARE
    p regclass;
    n bigint;
BEGIN
    FOR p IN SELECT partition FROM outbox_partitions WHERE from_time > '-infinity' LOOP
        EXECUTE format('SELECT count(*) FROM %s', p) INTO n;
        IF n > 0 THEN
            RAISE EXCEPTION 'partition % holds % rows: the soak needs a fresh database', p, n;
        END IF;
        EXECUTE format('DROP TABLE %s', p);
    END LOOP;
END $$`

// setPartitions sets the outbox's partition interval and partitions ahead
// for the run and remakes the (empty) partitions at that interval.
func setPartitions(ctx context.Context, db *pgxpool.Pool, interval time.Duration, ahead int) error {
	if _, err := db.Exec(ctx, `UPDATE outbox_partition_config SET partition_interval = make_interval(secs => $1), partitions_ahead = $2`,
		interval.Seconds(), ahead); err != nil {
		return fmt.Errorf("set the partition settings: %w", err)
	}
	if _, err := db.Exec(ctx, remakePartitionsSQL); err != nil {
		return fmt.Errorf("remake the partitions: %w", err)
	}
	if _, err := db.Exec(ctx, `SELECT outbox_partitions_create()`); err != nil {
		return fmt.Errorf("create the partitions: %w", err)
	}
	return nil
}
