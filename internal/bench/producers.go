package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/relayproc"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/outbox"
)

// Producer modes: how a producer writes its rows of several assets.
const (
	// modeAutocommit: one single-row INSERT per row, each its own
	// transaction (psql, or a service without a transaction around it).
	modeAutocommit = "autocommit"
	// modeTx: BEGIN, one single-row INSERT per row, COMMIT.
	modeTx = "tx"
	// modeBatch: BEGIN, outbox.EmitBatch (one multi-row INSERT), COMMIT.
	modeBatch = "emitbatch"
)

var producerModes = []string{modeAutocommit, modeTx, modeBatch}

const (
	producerApp = "relay-bench-producer"
	// producerRowBase numbers producer rows apart from the other scenarios'.
	producerRowBase = 30_000_000
	// A producer's statement gives up after these, so that the scenario
	// never hangs; PostgreSQL detects a deadlock after deadlock_timeout (1 s
	// by default), well before.
	producerLockTimeout      = "5s"
	producerStatementTimeout = "10s"
	producerTxTimeout        = 15 * time.Second
	lockSampleInterval       = 5 * time.Millisecond
)

// lockWaitsSQL lists the producers waiting on a lock now, the kind of lock
// (pg_stat_activity.wait_event), and whether a producer holds what they
// wait for (rather than the relay). Only row and advisory locks
// (transactionid, tuple, advisory) are waits on another writer's key; an
// "object" wait is the database-wide lock every committing transaction that
// sent a NOTIFY takes in turn (the outbox trigger's wake-up), and "extend"
// is two writers growing the table's file at once.
const lockWaitsSQL = `
SELECT a.pid, coalesce(a.query_start, a.backend_start), a.wait_event NOT IN ('transactionid', 'tuple', 'advisory'),
       EXISTS (SELECT 1 FROM pg_stat_activity b
                WHERE b.pid = ANY (pg_blocking_pids(a.pid)) AND b.application_name = 'relay-bench-producer') AS bench_marker
  FROM pg_stat_activity a
 WHERE a.datname = current_database() AND a.application_name = 'relay-bench-producer' AND a.wait_event_type = 'Lock'`

// ProducerMode is one way of writing, run by all producers at once.
type ProducerMode struct {
	Mode     string  `json:"mode"`
	Seconds  float64 `json:"seconds"`
	Txs      int     `json:"transactions_committed"`
	Rows     int     `json:"rows_committed"`
	TxPerSec float64 `json:"transactions_per_sec"`
	// Errors counts failed transactions by SQLSTATE ("timeout" when the
	// bench's own deadline hit).
	Errors    map[string]int `json:"errors"`
	Deadlocks int            `json:"deadlocks_40P01"`
	// WaitsOnProducers counts lock waits (statements seen waiting in
	// pg_stat_activity, sampled every 5 ms) held up by another producer;
	// WaitsOnOthers those held up by anything else (the relay).
	WaitsOnProducers int `json:"lock_waits_on_producers"`
	WaitsOnOthers    int `json:"lock_waits_on_others"`
	// WaitsOnCommon counts waits on locks that are no key: the NOTIFY
	// lock at commit and the table's extension lock, whoever held them.
	WaitsOnCommon int     `json:"lock_waits_not_on_keys"`
	WaitSampledMS float64 `json:"lock_wait_sampled_ms"`
	TxP50MS       float64 `json:"tx_p50_ms"`
	TxP99MS       float64 `json:"tx_p99_ms"`
}

// ProducersResult is the producers scenario.
type ProducersResult struct {
	Scenario  string         `json:"scenario"`
	Producers int            `json:"producers"`
	Assets    int            `json:"assets"`
	RowsPerTx int            `json:"rows_per_transaction"`
	Modes     []ProducerMode `json:"modes"`
	// Committed rows, and how many of them reached Svix (bounded wait).
	Committed     int    `json:"rows_committed"`
	Delivered     int    `json:"rows_delivered"`
	LoadAtStart   string `json:"load_average_1m_at_start,omitempty"`
	RelayWarnings int    `json:"relay_warn_lines,omitempty"`
	RelayErrors   int    `json:"relay_error_lines,omitempty"`
}

// errorCount is the total of a mode's failed transactions.
func (m ProducerMode) errorCount() int {
	n := 0
	for _, v := range m.Errors {
		n += v
	}
	return n
}

// producers runs every producer mode in turn against a running relay.
func (b *bench) producers(ctx context.Context) (_ ProducersResult, err error) {
	const name = "producers"
	o := b.opts
	res := ProducersResult{Scenario: name, Producers: o.producers, Assets: o.producerAssets, RowsPerTx: o.producerRowsTx, LoadAtStart: relayproc.Load1()}
	run := &relayRun{name: name}
	defer run.close(b)
	if run.sch, err = b.newSchema(ctx, "bench_producers", 2); err != nil {
		return res, err
	}
	if err := b.prunePast(ctx, run.sch); err != nil {
		return res, err
	}
	cfg, err := pgxpool.ParseConfig(run.sch.url)
	if err != nil {
		return res, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = int32(o.producers)
	cfg.ConnConfig.RuntimeParams["application_name"] = producerApp
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = producerLockTimeout
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = producerStatementTimeout
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("connect producers: %w", err)
	}
	defer pool.Close()

	if run.fake, err = b.newFake(); err != nil {
		return res, err
	}
	if run.proc, err = relayproc.Start(b.relayBin, relayArgs, b.relayEnv(name, run.fake, run.sch, "RELAY_ORDERING=asset"), filepath.Join(b.tmp, name+".log")); err != nil {
		return res, err
	}
	var next atomic.Int64 // row numbers
	for mi, mode := range producerModes {
		m, err := b.producerMode(ctx, pool, mode, uint64(mi), &next)
		if err != nil {
			return res, err
		}
		res.Modes = append(res.Modes, m)
		res.Committed += m.Rows
		if run.proc.Dead() {
			return res, fmt.Errorf("relay exited (%v); see %s", run.proc.ExitErr(), run.proc.LogPath())
		}
	}
	// The delivery check is bounded like a drain, and by 15 s more when
	// drains are cut, to keep the default run short.
	limit := b.drainLimit(res.Committed)
	if o.drainCut > 0 {
		limit = min(limit, 15*time.Second)
	}
	if err := waitFor(ctx, run.fake, limit, func(s *svixfake.Server) bool { return s.MessageCount() >= res.Committed }, run.proc); err != nil {
		b.logf("producers: %d of %d committed rows reached svix within %s", run.fake.MessageCount(), res.Committed, limit)
	}
	res.Delivered = run.fake.MessageCount()
	if err := run.proc.Stop(30 * time.Second); err != nil {
		b.logf("producers: %v", err)
	}
	res.RelayWarnings, res.RelayErrors, _ = run.proc.LogSummary()
	run.proc = nil
	if res.Delivered > res.Committed {
		return res, fmt.Errorf("producers: svix holds %d messages for %d committed rows", res.Delivered, res.Committed)
	}
	return res, nil
}

// producerMode runs o.producers producers in one mode for
// o.producerDuration while sampling lock waits.
func (b *bench) producerMode(ctx context.Context, pool *pgxpool.Pool, mode string, seed uint64, next *atomic.Int64) (ProducerMode, error) {
	o := b.opts
	res := ProducerMode{Mode: mode, Errors: map[string]int{}}

	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan waitSamples, 1)
	go func() { sampled <- b.sampleLockWaits(sctx) }()

	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	deadline := start.Add(o.producerDuration)
	var wg sync.WaitGroup
	for w := range o.producers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for time.Now().Before(deadline) && ctx.Err() == nil {
				assets := rng.Perm(o.producerAssets)[:o.producerRowsTx]
				t := time.Now()
				err := b.produce(ctx, pool, mode, assets, next)
				d := time.Since(t)
				mu.Lock()
				if err != nil {
					res.Errors[sqlState(err)]++
				} else {
					res.Txs++
					res.Rows += len(assets)
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	stopSampling()
	ws := <-sampled
	if err := ctx.Err(); err != nil {
		return res, err
	}
	res.Deadlocks = res.Errors["40P01"]
	res.WaitsOnProducers, res.WaitsOnOthers, res.WaitsOnCommon = ws.onProducers, ws.onOthers, ws.onCommon
	res.WaitSampledMS = float64(ws.samples) * float64(lockSampleInterval.Microseconds()) / 1000
	res.TxPerSec = float64(res.Txs) / res.Seconds
	if d := delayOf(lat, 0); d != nil {
		res.TxP50MS, res.TxP99MS = d.P50MS, d.P99MS
	}
	b.logf("producers %s: %d transactions, errors %v, lock waits on producers %d, on others %d", mode, res.Txs, res.Errors, res.WaitsOnProducers, res.WaitsOnOthers)
	return res, nil
}

// produce writes one row for each of assets, in that order, as mode says.
func (b *bench) produce(ctx context.Context, pool *pgxpool.Pool, mode string, assets []int, next *atomic.Int64) error {
	ctx, cancel := context.WithTimeout(ctx, producerTxTimeout)
	defer cancel()
	evs := make([]outbox.Event, len(assets))
	for i, a := range assets {
		n := producerRowBase + int(next.Add(1))
		data, err := json.Marshal(map[string]string{
			"entity_id": "ent-" + b.runID + "-" + strconv.Itoa(n),
			"asset_id":  "asset-" + b.runID + "-p" + strconv.Itoa(a),
		})
		if err != nil {
			return err
		}
		evs[i] = outbox.Event{AppID: "acct-p", Type: outbox.EventType("render.completed"), Data: data}
	}
	switch mode {
	case modeAutocommit:
		for _, ev := range evs {
			if _, err := pool.Exec(ctx, insertOneSQL, ev.AppID, string(ev.Type), string(ev.Data)); err != nil {
				return err
			}
		}
		return nil
	case modeTx, modeBatch:
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if mode == modeBatch {
				_, err := outbox.EmitBatch(ctx, tx, evs)
				return err
			}
			for _, ev := range evs {
				if _, err := tx.Exec(ctx, insertOneSQL, ev.AppID, string(ev.Type), string(ev.Data)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return fmt.Errorf("unknown producer mode %q", mode)
}

// sqlState names an error by its SQLSTATE.
func sqlState(err error) string {
	var pg *pgconn.PgError
	switch {
	case errors.As(err, &pg):
		return pg.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "other"
	}
}

// waitSamples is what sampling pg_stat_activity saw.
type waitSamples struct {
	onProducers, onOthers int // distinct waits on row or key locks, by who held them up
	onCommon              int // distinct waits on locks that are no key (NOTIFY at commit, table extension)
	samples               int // waiting statements summed over samples
}

// sampleLockWaits polls pg_stat_activity until ctx ends. A wait is one
// statement (pid, query_start) seen waiting on a lock at least once; waits
// shorter than the interval may be missed.
func (b *bench) sampleLockWaits(ctx context.Context) waitSamples {
	type waitKey struct {
		pid   int32
		start time.Time
	}
	seen := map[waitKey]bool{}   // true: held up by a producer at some sample
	common := map[waitKey]bool{} // waits on locks that are no key
	var ws waitSamples
	tick := time.NewTicker(lockSampleInterval)
	defer tick.Stop()
	for {
		rows, err := b.admin.Query(ctx, lockWaitsSQL)
		if err == nil {
			for rows.Next() {
				var k waitKey
				var byProducer, notKey bool
				if rows.Scan(&k.pid, &k.start, &notKey, &byProducer) == nil {
					if notKey {
						common[k] = true
					} else {
						seen[k] = seen[k] || byProducer
					}
					ws.samples++
				}
			}
			rows.Close()
		}
		select {
		case <-ctx.Done():
			ws.onCommon = len(common)
			for _, byProducer := range seen {
				if byProducer {
					ws.onProducers++
				} else {
					ws.onOthers++
				}
			}
			return ws
		case <-tick.C:
		}
	}
}
