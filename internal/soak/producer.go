package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	insertSQL = `INSERT INTO outbox (app_id, event_type, data) VALUES ($1, $2, $3::jsonb)`
	// producerApp names the producers' connections in pg_stat_activity.
	producerApp = "relay-soak-producer"
	// A producer transaction is tried this many times before the run
	// stops: a failure is not expected, and a retried commit whose first
	// answer was lost would write its rows twice.
	producerAttempts = 3
	// catchUp bounds how far behind its schedule a producer may fall: after
	// a stall it writes at most this much of the schedule at once.
	catchUp = time.Second
)

// eventWeights is the mix of event types, in percent; every type appears.
var eventWeights = []struct {
	typ    string
	weight int
}{
	{"render.completed", 25}, {"cut.completed", 20}, {"asset.ready", 15}, {"asset.pending_payment", 10},
	{"render.failed", 8}, {"cut.failed", 8}, {"render.cancelled", 7}, {"asset.failed", 7},
}

// asset is one asset a producer writes events of, one per transaction at
// most, so that its rows commit in the order they are numbered (nth).
type asset struct {
	app, id     string
	nth, total  int
	lastPending bool // the last event was asset.pending_payment
}

// producers writes o.rows rows at o.rate rows/s from o.producers
// connections.
type producers struct {
	o        options
	runID    string
	pool     *pgxpool.Pool
	next     atomic.Int64 // row numbers handed out
	inserted atomic.Int64 // rows committed
	txs      atomic.Int64
	retries  atomic.Int64
	mu       sync.Mutex
	errs     map[string]int // failed attempts by SQLSTATE
}

func newProducers(ctx context.Context, o options, run, url string) (*producers, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	cfg.MaxConns = int32(o.producers)
	cfg.ConnConfig.RuntimeParams["application_name"] = producerApp
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = "30s"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect producers: %w", err)
	}
	return &producers{o: o, runID: run, pool: pool, errs: map[string]int{}}, nil
}

func (p *producers) close() { p.pool.Close() }

// run writes every row and returns when they are committed, or with the
// first transaction that failed producerAttempts times.
func (p *producers) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range p.o.producers {
		wg.Go(func() {
			if err := p.produce(ctx, w, start); err != nil {
				cancel(err)
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// produce is producer w: transactions of 1 to o.maxRowsTx rows of its own
// live assets, on a schedule of o.rate/o.producers rows/s from start.
func (p *producers) produce(ctx context.Context, w int, start time.Time) error {
	o := p.o
	rng := rand.New(rand.NewPCG(uint64(w)+1, 0x50a4))
	perRow := time.Duration(float64(time.Second) * float64(o.producers) / o.rate)
	due := start
	live := make([]*asset, o.liveAssets)
	made := 0
	newAsset := func() *asset {
		made++
		return &asset{
			app:   "soak-acct-" + strconv.Itoa(rng.IntN(o.apps)),
			id:    "asset-" + p.runID + "-" + strconv.Itoa(w) + "-" + strconv.Itoa(made),
			total: 1 + rng.IntN(o.maxEvents),
		}
	}
	for i := range live {
		live[i] = newAsset()
	}
	idx := make([]int, len(live))
	for i := range idx {
		idx[i] = i
	}
	type row struct{ app, typ, data string }
	rows := make([]row, 0, o.maxRowsTx)
	for {
		if d := time.Until(due); d > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		} else if ctx.Err() != nil {
			return nil
		}
		k := int64(1 + rng.IntN(o.maxRowsTx))
		first := p.next.Add(k) - k
		if first >= o.rows {
			return nil
		}
		k = min(k, o.rows-first)
		// k distinct live assets (a partial shuffle).
		rows = rows[:0]
		for j := range int(k) {
			s := j + rng.IntN(len(idx)-j)
			idx[j], idx[s] = idx[s], idx[j]
			a := live[idx[j]]
			typ, data := eventOf(rng, a, first+int64(j))
			rows = append(rows, row{a.app, typ, data})
		}
		var err error
		for attempt := 1; attempt <= producerAttempts; attempt++ {
			err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
				b := &pgx.Batch{}
				for _, r := range rows {
					b.Queue(insertSQL, r.app, r.typ, r.data)
				}
				return tx.SendBatch(ctx, b).Close()
			})
			if err == nil || ctx.Err() != nil {
				break
			}
			p.failed(err)
			p.retries.Add(1)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("producer %d: transaction of rows %d-%d failed %d times: %w", w, first, first+k-1, producerAttempts, err)
		}
		p.txs.Add(1)
		p.inserted.Add(k)
		for j := range int(k) {
			a := live[idx[j]]
			a.nth++
			if a.nth == a.total {
				live[idx[j]] = newAsset()
			}
		}
		due = due.Add(time.Duration(k) * perRow)
		if lag := time.Since(due); lag > catchUp {
			due = time.Now().Add(-catchUp)
		}
	}
}

// failed counts a failed attempt by its SQLSTATE.
func (p *producers) failed(err error) {
	code := "other"
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		code = pg.Code
	}
	p.mu.Lock()
	p.errs[code]++
	p.mu.Unlock()
}

// errors returns the failed attempts by SQLSTATE.
func (p *producers) failures() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.errs))
	for k, v := range p.errs {
		out[k] = v
	}
	return out
}

// eventOf is asset a's next event (its nth), row number row: the type by
// eventWeights, and data with the ids, a few product fields, and the
// soak's own keys (extra keys are delivered unchanged): soak_row numbers
// the row, soak_nth and soak_of place it in its asset's events.
func eventOf(rng *rand.Rand, a *asset, row int64) (typ, data string) {
	n := rng.IntN(100)
	for _, e := range eventWeights {
		if n < e.weight {
			typ = e.typ
			break
		}
		n -= e.weight
	}
	extra := ""
	switch typ {
	case "asset.ready":
		prev := "processing"
		if a.lastPending {
			prev = "pending_payment"
		}
		extra = `,"previous_state":"` + prev + `"`
	case "render.completed", "cut.completed":
		extra = `,"duration_ms":` + strconv.Itoa(1000+rng.IntN(600_000)) + `,"profile":"h264-1080p","bytes":` + strconv.FormatInt(rng.Int64N(1<<32), 10)
	case "render.failed", "cut.failed", "asset.failed":
		extra = `,"reason":"transcoder exited with status 137"`
	}
	a.lastPending = typ == "asset.pending_payment"
	entity := a.id
	if typ[0] == 'r' || typ[0] == 'c' { // render.* and cut.*: an entity of the asset
		entity = typ[:strings.IndexByte(typ, '.')] + "-" + a.id + "-" + strconv.Itoa(a.nth)
	}
	data = `{"entity_id":"` + entity + `","asset_id":"` + a.id + `"` + extra +
		`,"soak_row":` + strconv.FormatInt(row, 10) + `,"soak_nth":` + strconv.Itoa(a.nth) + `,"soak_of":` + strconv.Itoa(a.total) + `}`
	return typ, data
}
