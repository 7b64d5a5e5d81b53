package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/mediaplatform/relay/internal/relayproc"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// River settings of the relay (dispatch.New in cmd/relay), used again for the no-op
// reference so that the two rates compare like with like.
const (
	riverClientFetchCooldown = time.Millisecond       // the client's: spaces insert notifications
	riverQueueFetchCooldown  = 5 * time.Millisecond   // the queue's: spaces fetches
	riverFetchPollInterval   = 100 * time.Millisecond // min(RELAY_POLL_INTERVAL, 100ms)
	relayDBMaxConns          = 20                     // RELAY_DB_MAX_CONNS default
	relayConcurrency         = 400                    // RELAY_CONCURRENCY default
)

// Usage is the CPU and memory a scenario cost, and where the machine's
// CPU went meanwhile.
type Usage struct {
	// WallSeconds is the span the CPU figures cover.
	WallSeconds float64 `json:"wall_seconds,omitempty"`
	// RelayPeakRSSMiB is the largest peak RSS (VmHWM) of any relay
	// process; RelayPeakRSSPerReplicaMiB lists each replica's.
	RelayPeakRSSMiB           float64   `json:"relay_peak_rss_mib,omitempty"`
	RelayPeakRSSPerReplicaMiB []float64 `json:"relay_peak_rss_per_replica_mib,omitempty"`
	// RelayCPUSeconds is summed over the relay processes.
	RelayCPUSeconds float64 `json:"relay_cpu_seconds,omitempty"`
	// PostgresCPUSeconds is the whole cluster (every database);
	// PostgresBackendCPUSeconds the backends serving the bench's database
	// (nil when they cannot be told apart).
	PostgresCPUSeconds        *float64 `json:"postgres_cpu_seconds,omitempty"`
	PostgresBackendCPUSeconds *float64 `json:"postgres_backend_cpu_seconds,omitempty"`
	// BenchCPUSeconds is the bench process: the fake Svix, or River's
	// client in the no-op reference.
	BenchCPUSeconds float64 `json:"bench_cpu_seconds"`
	// Per 1,000 rows (jobs).
	RelayCPUPer1k    float64  `json:"relay_cpu_seconds_per_1k,omitempty"`
	PostgresCPUPer1k *float64 `json:"postgres_cpu_seconds_per_1k,omitempty"`
	BenchCPUPer1k    float64  `json:"bench_cpu_seconds_per_1k"`
	// CPUBusy is the measured CPU (relay, cluster, bench) over wall time
	// × cores; MachineBusy is every process's, from /proc/stat (nil when
	// unreadable). Near 1 the machine was saturated; the difference is
	// other work on the machine.
	CPUBusy     float64  `json:"cpu_busy"`
	MachineBusy *float64 `json:"machine_busy,omitempty"`
}

// DrainResult is one backlog drain (or the River reference, or the rate cap).
type DrainResult struct {
	Scenario string `json:"scenario"`
	// Replicas is how many relay processes drained it.
	Replicas      int     `json:"replicas,omitempty"`
	Rows          int     `json:"rows"`
	SvixLatencyMS int     `json:"svix_latency_ms"`
	Ordering      string  `json:"ordering,omitempty"`
	RateLimit     float64 `json:"rate_limit,omitempty"`
	// Seconds runs from the relay's start (exec) to Svix accepting the
	// last row; for River, from Start to the last Work call.
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_sec"`
	// RecordedSeconds runs until every row is also marked delivered in the
	// outbox (the relay's own bookkeeping caught up).
	RecordedSeconds float64 `json:"recorded_seconds,omitempty"`
	// SteadyPerSec is the rate between the first and the last accepted
	// message (rate cap), without the start-up.
	SteadyPerSec float64 `json:"steady_per_sec,omitempty"`
	VsRiver      float64 `json:"vs_river,omitempty"`
	InsertSecs   float64 `json:"backlog_insert_seconds"`
	// Layout and Stats say how the backlog was written (backlog.go).
	Layout       string `json:"layout,omitempty"`
	Stats        string `json:"planner_statistics,omitempty"`
	Keys         int    `json:"keys,omitempty"`
	MultiRowKeys int    `json:"keys_with_several_rows,omitempty"`
	// Delivered rows reached Svix; fewer than Rows when the drain was cut
	// after CutAfterSecs (the rate is then that of the delivered rows).
	Delivered    int     `json:"delivered"`
	Complete     bool    `json:"complete"`
	CutAfterSecs float64 `json:"cut_after_seconds,omitempty"`
	// ToSvix is the time from the relay's start to each row's acceptance.
	ToSvix  *Delay   `json:"to_svix,omitempty"`
	NextRow *NextRow `json:"next_row,omitempty"`
	Cost    *Cost    `json:"pg_cost,omitempty"`
	Usage
	LoadAtStart      string           `json:"load_average_1m_at_start,omitempty"`
	BusyElsewhere    int              `json:"busy_backends_elsewhere,omitempty"`
	RelayPeakHeapMiB float64          `json:"relay_peak_heap_mib,omitempty"`
	Status           map[string]int64 `json:"svix_status,omitempty"`
	Messages         int              `json:"svix_messages,omitempty"`
	RelayWarnings    int              `json:"relay_warn_lines,omitempty"`
	RelayErrors      int              `json:"relay_error_lines,omitempty"`
}

// LatencyResult is the steady-state latency scenario.
type LatencyResult struct {
	Scenario     string  `json:"scenario"`
	TargetRate   float64 `json:"target_rows_per_sec"`
	AchievedRate float64 `json:"inserted_rows_per_sec"`
	Seconds      float64 `json:"seconds"`
	Rows         int     `json:"rows"`
	Delivered    int     `json:"delivered"`
	Conns        int     `json:"insert_connections"`
	Ordering     string  `json:"ordering"`
	P50MS        float64 `json:"p50_ms"`
	P95MS        float64 `json:"p95_ms"`
	P99MS        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
	MeanMS       float64 `json:"mean_ms"`
	// Stages splits commit -> Svix at the row's claim (its enqueued_at,
	// the database's clock): commit -> claimed, claimed -> Svix.
	Stages []LatencyStage `json:"stages,omitempty"`
	Usage
	LoadAtStart      string  `json:"load_average_1m_at_start,omitempty"`
	RelayPeakHeapMiB float64 `json:"relay_peak_heap_mib,omitempty"`
	RelayWarnings    int     `json:"relay_warn_lines,omitempty"`
	RelayErrors      int     `json:"relay_error_lines,omitempty"`
	// Statements and Sequencer are from pg_stat_statements, over the
	// inserts and their deliveries (the bench's INSERTs included).
	Statements []StatementCost `json:"top_statements,omitempty"`
	Sequencer  *SequencerCost  `json:"sequencer,omitempty"`
}

// cpuMark is a point to measure CPU from.
type cpuMark struct {
	at               time.Time
	pg, bench, relay time.Duration
	backends         map[int]time.Duration
	machine          relayproc.CPUStat
	machineErr       error
}

// mark notes the CPU used so far; relays is empty before the relays start.
func (b *bench) mark(rs ...*relayproc.Proc) (cpuMark, error) {
	m := cpuMark{at: time.Now(), pg: b.pg.total(), bench: selfCPU(), backends: b.backendCPU()}
	m.machine, m.machineErr = relayproc.ReadCPUStat()
	u, _, err := relays(rs).usage()
	m.relay = u.CPU
	return m, err
}

// usageSince is the usage of a scenario's rows from m to now; relay is the
// relays' own usage now (CPU summed; zero when the scenario ran no relay).
// PostgreSQL's CPU includes whatever else the cluster did meanwhile (in the
// latency scenario, the bench's own INSERTs).
func (b *bench) usageSince(m cpuMark, relay relayproc.Usage, rows int) Usage {
	wall := time.Since(m.at)
	u := Usage{
		WallSeconds:     wall.Seconds(),
		RelayPeakRSSMiB: float64(relay.PeakRSSKiB) / 1024,
		RelayCPUSeconds: max(relay.CPU-m.relay, 0).Seconds(),
		BenchCPUSeconds: (selfCPU() - m.bench).Seconds(),
	}
	total := u.RelayCPUSeconds + u.BenchCPUSeconds
	if b.pg != nil {
		pg := (b.pg.total() - m.pg).Seconds()
		u.PostgresCPUSeconds = &pg
		total += pg
		per := pg / float64(rows) * 1000
		u.PostgresCPUPer1k = &per
		if b.dbName != "" {
			var sum time.Duration
			for pid, t := range b.backendCPU() {
				sum += t - m.backends[pid]
			}
			v := sum.Seconds()
			u.PostgresBackendCPUSeconds = &v
		}
	}
	if now, err := relayproc.ReadCPUStat(); err == nil && m.machineErr == nil {
		if v := now.BusySince(m.machine); v >= 0 {
			u.MachineBusy = &v
		}
	}
	u.RelayCPUPer1k = u.RelayCPUSeconds / float64(rows) * 1000
	u.BenchCPUPer1k = u.BenchCPUSeconds / float64(rows) * 1000
	u.CPUBusy = total / (wall.Seconds() * float64(b.cores))
	return u
}

// relayRun is a scenario's fake Svix, schema and relay process.
type relayRun struct {
	name string
	fake *svixfake.Server
	sch  *benchSchema
	proc *relayproc.Proc // the relay of a single-relay scenario
	reps relays          // the relays of a drain
}

func (b *bench) newFake() (*svixfake.Server, error) {
	fake, err := svixfake.New(svixfake.Config{MaxRecordedRequests: -1})
	if err != nil {
		return nil, err
	}
	if err := fake.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return fake, nil
}

// relayEnv is the environment of a relay run against fake and sch.
func (b *bench) relayEnv(name string, fake *svixfake.Server, sch *benchSchema, extra ...string) []string {
	env := []string{
		"DATABASE_URL=" + sch.url,
		"SVIX_AUTH_TOKEN=" + svixfake.DefaultToken,
		"SVIX_SERVER_URL=" + fake.URL(),
		"RELAY_LOG_LEVEL=" + b.opts.logLevel,
		"RELAY_CONCURRENCY=" + strconv.Itoa(b.opts.concurrency),
		// The runtime's GC trace, in the log file: the relay's peak heap.
		"GODEBUG=gctrace=1",
	}
	if b.opts.profileDir != "" {
		env = append(env, "RELAY_CPU_PROFILE="+filepath.Join(b.opts.profileDir, name+".pprof"))
	}
	env = append(env, extra...)
	return append(env, b.opts.relayEnv...)
}

func (r *relayRun) close(b *bench) {
	if r.proc != nil {
		if err := r.proc.Stop(30 * time.Second); err != nil {
			b.logf("%s: stop relay: %v", r.name, err)
		}
	}
	r.reps.stop(b, r.name, 30*time.Second)
	if r.fake != nil {
		_ = r.fake.Close()
	}
	if r.sch != nil {
		b.dropSchema(r.sch)
	}
}

func statusMap(fake *svixfake.Server) map[string]int64 {
	m := map[string]int64{}
	for code, n := range fake.StatusCounts() {
		m[strconv.Itoa(code)] = n
	}
	return m
}

// latency inserts rows at a fixed rate with single-row autocommit INSERTs
// from several connections and measures commit (as the inserting client
// sees it) to Svix receiving the request.
func (b *bench) latency(ctx context.Context) (_ LatencyResult, err error) {
	name := "latency"
	o := b.opts
	res := LatencyResult{Scenario: name, TargetRate: o.latencyRate, Conns: o.latencyConns, Ordering: "asset", LoadAtStart: relayproc.Load1()}
	run := &relayRun{name: name}
	defer run.close(b)
	if run.sch, err = b.newSchema(ctx, "bench_latency", int32(o.latencyConns)+2); err != nil {
		return res, err
	}
	if err := b.prunePast(ctx, run.sch); err != nil {
		return res, err
	}
	if run.fake, err = b.newFake(); err != nil {
		return res, err
	}
	if run.proc, err = relayproc.Start(b.relayBin, relayArgs, b.relayEnv(name, run.fake, run.sch, "RELAY_ORDERING="+res.Ordering), filepath.Join(b.tmp, name+".log")); err != nil {
		return res, err
	}

	// Warm up: the relay is connected, listening and has sent a few rows.
	const warm = 20
	for i := range warm {
		if err := insertOne(ctx, run.sch.pool, b.runID, 10_000_000+i); err != nil {
			return res, err
		}
	}
	err = waitFor(ctx, run.fake, 30*time.Second, func(s *svixfake.Server) bool { return s.MessageCount() >= warm }, run.proc)
	if err != nil {
		return res, fmt.Errorf("latency: warm-up rows not delivered: %w", err)
	}

	total := int(o.latencyRate * o.latencyDuration.Seconds())
	period := time.Duration(float64(time.Second) / o.latencyRate)
	commits := make([]time.Time, total) // row i's commit, as its inserter saw it
	stmts, err := b.statementStats(ctx)
	if err != nil {
		return res, err
	}
	m, err := b.mark(run.proc)
	if err != nil {
		return res, err
	}
	t0 := time.Now().Add(10 * time.Millisecond)
	// Row i is due at t0 + i×period; connection w writes rows w, w+conns, ...
	gctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var wg sync.WaitGroup
	for w := range o.latencyConns {
		wg.Go(func() {
			for i := w; i < total; i += o.latencyConns {
				if d := time.Until(t0.Add(time.Duration(i) * period)); d > 0 {
					select {
					case <-gctx.Done():
						return
					case <-time.After(d):
					}
				}
				if err := insertOne(gctx, run.sch.pool, b.runID, i); err != nil {
					stop(err)
					return
				}
				commits[i] = time.Now()
			}
		})
	}
	wg.Wait()
	if err := context.Cause(gctx); err != nil {
		return res, fmt.Errorf("latency: insert: %w", err)
	}
	insertSecs := time.Since(t0).Seconds()
	err = waitFor(ctx, run.fake, 30*time.Second, func(s *svixfake.Server) bool { return s.MessageCount() >= warm+total }, run.proc)
	if err != nil {
		b.logf("latency: %d of %d rows delivered 30 s after the last insert", run.fake.MessageCount()-warm, total)
	}
	relay, err := run.proc.Usage()
	if err != nil {
		return res, err
	}
	res.Usage = b.usageSince(m, relay, total)
	after, err := b.statementStats(ctx)
	if err != nil {
		return res, err
	}
	res.Statements, res.Sequencer = statementCosts(stmts, after, total, topStatements)

	// Each row's acceptance by Svix, matched to its commit by the row
	// index its entity_id carries.
	dels, err := deliveries(run.fake.AllMessages())
	if err != nil {
		return res, fmt.Errorf("latency: %w", err)
	}
	lat := make([]time.Duration, 0, total)
	var sum time.Duration
	for _, d := range dels {
		if d.row < 0 || d.row >= total || commits[d.row].IsZero() {
			continue
		}
		v := time.UnixMicro(d.atUS).Sub(commits[d.row])
		lat = append(lat, v)
		sum += v
	}
	slices.Sort(lat)
	res.Rows, res.Delivered = total, len(lat)
	res.Seconds = insertSecs
	res.AchievedRate = float64(total) / insertSecs
	if len(lat) > 0 {
		res.P50MS, res.P95MS, res.P99MS = ms(pct(lat, 0.50)), ms(pct(lat, 0.95)), ms(pct(lat, 0.99))
		res.MaxMS, res.MeanMS = ms(lat[len(lat)-1]), ms(sum/time.Duration(len(lat)))
	}
	if res.Stages, err = latencyStages(ctx, run.sch.pool, dels, commits); err != nil {
		return res, fmt.Errorf("latency: %w", err)
	}
	if err := run.proc.Stop(30 * time.Second); err != nil {
		b.logf("latency: %v", err)
	}
	res.RelayWarnings, res.RelayErrors, res.RelayPeakHeapMiB = run.proc.LogSummary()
	run.proc = nil
	return res, nil
}

const insertOneSQL = `INSERT INTO outbox (app_id, event_type, data) VALUES ($1, $2, $3::jsonb)`

// insertOne writes row i in its own transaction.
func insertOne(ctx context.Context, pool *pgxpool.Pool, run string, i int) error {
	app, typ, data := event(run, i)
	if _, err := pool.Exec(ctx, insertOneSQL, app, typ, data); err != nil {
		return fmt.Errorf("insert outbox row: %w", err)
	}
	return nil
}

func pct(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// noopArgs is the River reference's job: it does nothing.
type noopArgs struct{}

func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	left *atomic.Int64
	done chan struct{}
}

func (w *noopWorker) Work(context.Context, *river.Job[noopArgs]) error {
	if w.left.Add(-1) == 0 {
		close(w.done)
	}
	return nil
}

// riverNoop inserts n no-op jobs and times River working them down with
// the relay's settings, in this process, on the same database.
func (b *bench) riverNoop(ctx context.Context, n int) (_ DrainResult, err error) {
	res := DrainResult{Scenario: "river-noop", Rows: n}
	sch, err := b.newSchema(ctx, "bench_river", relayDBMaxConns)
	if err != nil {
		return res, err
	}
	defer b.dropSchema(sch)

	left := new(atomic.Int64)
	left.Store(int64(n))
	done := make(chan struct{})
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{left: left, done: done})
	client, err := river.NewClient(riverpgxv5.New(sch.pool), &river.Config{
		Logger:            slog.New(slog.DiscardHandler),
		Queues:            map[string]river.QueueConfig{"bench": {MaxWorkers: b.opts.concurrency, FetchCooldown: riverQueueFetchCooldown}},
		Workers:           workers,
		FetchCooldown:     riverClientFetchCooldown,
		FetchPollInterval: riverFetchPollInterval,
	})
	if err != nil {
		return res, fmt.Errorf("river client: %w", err)
	}
	t := time.Now()
	params := make([]river.InsertManyParams, 0, 1000)
	for i := 0; i < n; i += 1000 {
		params = params[:0]
		for range min(1000, n-i) {
			params = append(params, river.InsertManyParams{Args: noopArgs{}, InsertOpts: &river.InsertOpts{Queue: "bench"}})
		}
		if _, err := client.InsertMany(ctx, params); err != nil {
			return res, fmt.Errorf("insert no-op jobs: %w", err)
		}
	}
	if _, err := sch.pool.Exec(ctx, "ANALYZE river_job"); err != nil {
		return res, err
	}
	res.InsertSecs = time.Since(t).Seconds()

	m, err := b.mark()
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := client.Start(context.WithoutCancel(ctx)); err != nil {
		return res, fmt.Errorf("start river client: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = client.Stop(sctx)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(time.Duration(n/200)*time.Second + 30*time.Second):
		return res, fmt.Errorf("river no-op: %d of %d jobs left", left.Load(), n)
	}
	elapsed := time.Since(start)
	res.Usage = b.usageSince(m, relayproc.Usage{}, n)
	res.Seconds = elapsed.Seconds()
	res.RowsPerSec = float64(n) / elapsed.Seconds()
	res.Delivered, res.Complete = n, true
	return res, nil
}

func sanitize(s string) string {
	out := []byte(s)
	for i, c := range out {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			out[i] = '_'
		}
	}
	return string(out)
}

// LatencyStage is one stage of the latency scenario's commit -> Svix.
type LatencyStage struct {
	Stage string  `json:"stage"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
}

// latencyStages splits each delivered row's commit -> Svix at its claim:
// the row's enqueued_at (when admission or its predecessor's outcome handed
// it to a job). The bench, PostgreSQL and the fake share one clock.
func latencyStages(ctx context.Context, pool *pgxpool.Pool, dels []delivery, commits []time.Time) ([]LatencyStage, error) {
	rows, err := pool.Query(ctx, `SELECT data ->> 'entity_id', enqueued_at FROM outbox WHERE enqueued_at IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("read claim times: %w", err)
	}
	claimedAt := make(map[int]time.Time, len(commits))
	var entity string
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&entity, &at}, func() error {
		row, err := rowIndex(entity)
		claimedAt[row] = at
		return err
	}); err != nil {
		return nil, fmt.Errorf("read claim times: %w", err)
	}
	var toClaim, toSvix []time.Duration
	for _, d := range dels {
		c, ok := claimedAt[d.row]
		if d.row < 0 || d.row >= len(commits) || commits[d.row].IsZero() || !ok {
			continue
		}
		toClaim = append(toClaim, c.Sub(commits[d.row]))
		toSvix = append(toSvix, time.UnixMicro(d.atUS).Sub(c))
	}
	if len(toClaim) == 0 {
		return nil, nil
	}
	out := make([]LatencyStage, 0, 2)
	for _, s := range []struct {
		name string
		v    []time.Duration
	}{{"commit -> claimed", toClaim}, {"claimed -> Svix", toSvix}} {
		slices.Sort(s.v)
		out = append(out, LatencyStage{Stage: s.name, P50MS: ms(pct(s.v, 0.50)), P99MS: ms(pct(s.v, 0.99))})
	}
	return out, nil
}
