package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Backlog layouts: how a backlog's rows spread over ordering keys.
const (
	// layoutDistinct is the best case: every row has an asset of its own,
	// spread over 64 apps (event).
	layoutDistinct = "distinct"
	// layoutRealistic is an outage's backlog: 8 apps, rows/50 assets per
	// app, 1 to 20 rows per asset (about 6), interleaved in a deterministic
	// pseudo-random order, as products write them.
	layoutRealistic = "realistic"
	// layoutSingle is the realistic backlog's 8 apps with one row per asset.
	layoutSingle = "single"
	// layoutFewKeys is a few keys with many rows each (nextRowKeys ×
	// rows/nextRowKeys): fewer keys than the relay's concurrency, so no row
	// queues behind other keys and a key's next row waits only on its
	// predecessor.
	layoutFewKeys = "few-keys"
)

const (
	realisticApps        = 8
	realisticRowsPerKey  = 6.25 // 50,000 rows over 8 × 1,000 assets
	realisticMaxRowsKey  = 20
	realisticSeed        = 12 // fixed: every run writes the same backlog
	defaultNextRowKeys   = 50
	realisticPayloadPad  = "h264-1080p"
	realisticTypesPerKey = 4
)

// backlogPlan is the order in which a backlog's rows are written: row i
// belongs to key keys[i]. Keys are numbered app-major: key k is asset
// k/apps of app k%apps.
type backlogPlan struct {
	layout string
	apps   int
	keys   []int32
	nkeys  int
}

// planBacklog lays out rows rows; keysHint is the number of keys of
// layoutFewKeys (ignored otherwise).
func planBacklog(layout string, rows, keysHint int) backlogPlan {
	p := backlogPlan{layout: layout, apps: realisticApps, keys: make([]int32, rows)}
	switch layout {
	case layoutDistinct, layoutSingle:
		p.nkeys = rows
		for i := range p.keys {
			p.keys[i] = int32(i)
		}
		if layout == layoutDistinct {
			p.apps = 64
		}
		return p
	case layoutFewKeys:
		p.nkeys = min(max(keysHint, 1), rows)
		for i := range p.keys {
			p.keys[i] = int32(i % p.nkeys)
		}
		p.apps = min(p.apps, p.nkeys)
		return p
	}
	// layoutRealistic: counts of 1 to 20 rows per key, about 6.25 on
	// average, adjusted to add up to rows exactly, then the rows shuffled.
	p.nkeys = max(1, int(float64(rows)/realisticRowsPerKey)/p.apps*p.apps)
	p.nkeys = min(p.nkeys, rows)
	p.apps = min(p.apps, p.nkeys)
	rng := rand.New(rand.NewPCG(realisticSeed, uint64(rows)))
	counts := make([]int, p.nkeys)
	sum := 0
	for k := range counts {
		// 1 + an exponential of mean 5.25, cut at 20.
		c := 1 + int(math.Floor(rng.ExpFloat64()*(realisticRowsPerKey-1)))
		counts[k] = min(c, realisticMaxRowsKey)
		sum += counts[k]
	}
	for sum < rows {
		k := rng.IntN(p.nkeys)
		if counts[k] < realisticMaxRowsKey || p.nkeys*realisticMaxRowsKey < rows {
			counts[k]++
			sum++
		}
	}
	for sum > rows {
		if k := rng.IntN(p.nkeys); counts[k] > 1 {
			counts[k]--
			sum--
		}
	}
	i := 0
	for k, c := range counts {
		for range c {
			p.keys[i] = int32(k)
			i++
		}
	}
	rng.Shuffle(len(p.keys), func(a, b int) { p.keys[a], p.keys[b] = p.keys[b], p.keys[a] })
	return p
}

// multiRowKeys counts the keys that have more than one row.
func (p backlogPlan) multiRowKeys() int {
	seen := make([]uint8, p.nkeys)
	n := 0
	for _, k := range p.keys {
		if seen[k] == 1 {
			n++
		}
		if seen[k] < 2 {
			seen[k]++
		}
	}
	return n
}

// plannedEvent returns row i of a plan whose key has already had nth rows
// written: its app, type and data. data.entity_id ends in "-<i>", so a
// delivery names the row it came from whatever the relay's keys look like.
func plannedEvent(run string, p backlogPlan, i, nth int) (app, eventType, data string) {
	if p.layout == layoutDistinct {
		return event(run, i)
	}
	k := int(p.keys[i])
	app = "acct-" + strconv.Itoa(k%p.apps)
	asset := "asset-" + run + "-" + strconv.Itoa(k)
	prev := ""
	// Each asset's rows tell a story in order: a render, a cut, payment,
	// then ready, and so on.
	switch nth % realisticTypesPerKey {
	case 0:
		eventType = "render.completed"
	case 1:
		eventType = "cut.completed"
	case 2:
		eventType = "asset.pending_payment"
	default:
		eventType = "asset.ready"
		prev = `,"previous_state":"pending_payment"`
	}
	data = `{"entity_id":"ent-` + run + `-` + strconv.Itoa(i) + `","asset_id":"` + asset + `"` + prev +
		`,"duration_ms":` + strconv.Itoa(1000+i%90000) + `,"profile":"` + realisticPayloadPad + `","bytes":` + strconv.Itoa(i*7919) + `}`
	return app, eventType, data
}

// insertPlan writes a plan's rows with COPY, 10,000 rows per transaction
// (the validation and ordering triggers run for each row, as for any
// INSERT), so that ids and commit order follow the plan's order. With
// analyze, ANALYZE runs after the last chunk, as autovacuum would have on a
// table this size; without it the planner keeps the statistics of a table
// just created.
func insertPlan(ctx context.Context, pool *pgxpool.Pool, run string, p backlogPlan, analyze bool) error {
	const chunk = 10_000
	nth := make([]int32, p.nkeys)
	for start := 0; start < len(p.keys); start += chunk {
		n := min(chunk, len(p.keys)-start)
		src := pgx.CopyFromSlice(n, func(j int) ([]any, error) {
			i := start + j
			k := p.keys[i]
			app, typ, data := plannedEvent(run, p, i, int(nth[k]))
			nth[k]++
			return []any{app, typ, data}, nil
		})
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"outbox"}, []string{"app_id", "event_type", "data"}, src); err != nil {
			return fmt.Errorf("copy outbox rows: %w", err)
		}
	}
	if analyze {
		if _, err := pool.Exec(ctx, "ANALYZE outbox"); err != nil {
			return fmt.Errorf("analyze outbox: %w", err)
		}
	}
	return nil
}

// noAnalyzeSQL keeps autovacuum's ANALYZE off the outbox's partitions for
// a run, so their column statistics stay those of the tables just created,
// as when autoanalyze lags behind a backlog that built up during an
// outage. Autovacuum's VACUUM runs as it would on a server (it reclaims
// the dead row versions and index entries three updates per row leave;
// a 1M-row drain slowed down without it).
const noAnalyzeSQL = `
DO $$
DECLARE p regclass;
BEGIN
    FOR p IN SELECT partition FROM outbox_partitions LOOP
        EXECUTE format('ALTER TABLE %s SET (autovacuum_analyze_threshold = 2147483647, autovacuum_analyze_scale_factor = 100)', p);
    END LOOP;
END $$`

// delivery is one row as Svix received it.
type delivery struct {
	row   int    // the row's index in its backlog (from data.entity_id)
	key   string // app and asset
	atUS  int64  // when Svix accepted it, Unix microseconds
	valid bool
}

// parseDelivery reads the row index and key from a message payload,
// {"type":..., "data":{"entity_id":"ent-<run>-<i>","asset_id":...}}.
func parseDelivery(appUID string, payload []byte) (delivery, error) {
	var body struct {
		Data struct {
			EntityID string `json:"entity_id"`
			AssetID  string `json:"asset_id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(payload, &body); err != nil {
		return delivery{}, fmt.Errorf("parse svix payload: %w", err)
	}
	i, err := rowIndex(body.Data.EntityID)
	if err != nil {
		return delivery{}, fmt.Errorf("svix payload: %w", err)
	}
	return delivery{row: i, key: appUID + "/" + body.Data.AssetID, valid: true}, nil
}

// rowIndex is the index of the bench row whose data.entity_id is
// entityID ("ent-<run>-<i>").
func rowIndex(entityID string) (int, error) {
	j := strings.LastIndexByte(entityID, '-')
	i, err := strconv.Atoi(entityID[j+1:])
	if j < 0 || err != nil {
		return 0, fmt.Errorf("entity_id %q does not name a bench row", entityID)
	}
	return i, nil
}

const (
	// weekOfPartitions is how many daily partitions older than a fresh
	// schema's the realistic scenarios add: with the default retention
	// (7 days) production keeps about a week of them.
	weekOfPartitions = 7
	// pastPartitionRows is how many delivered rows each of them holds:
	// enough that their indexes have pages to descend, few enough to write
	// in a moment.
	pastPartitionRows = 2000
)

// pastPartitionsSQL adds bench.past_partitions partitions before the
// oldest dated one, each partition_interval long, and fills each with
// bench.past_partition_rows delivered, numbered rows. The rows are written
// as retention moves rows (relay.outbox_move), the only way to give
// partition_at and the relay-owned columns a value at INSERT.
const pastPartitionsSQL = `
DO $$
DECLARE
    step  interval := (SELECT partition_interval FROM outbox_partition_config);
    hi    timestamptz := (SELECT min(from_time) FROM outbox_partitions WHERE from_time > '-infinity');
    lo    timestamptz;
    n     integer := current_setting('bench.past_partitions')::integer;
    rows  integer := current_setting('bench.past_partition_rows')::integer;
BEGIN
    PERFORM set_config('relay.outbox_move', 'on', true);
    FOR i IN 1..n LOOP
        lo := hi - step;
        EXECUTE format('CREATE TABLE %I PARTITION OF outbox FOR VALUES FROM (%L) TO (%L) WITH (fillfactor = 85)',
                       'outbox_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS'), lo, hi);
        INSERT INTO outbox (app_id, event_type, data, partition_at, created_at, commit_seq,
                            enqueued_at, delivered_at, svix_message_id)
        SELECT 'acct-past', 'asset.ready',
               jsonb_build_object('asset_id', 'past-' || g, 'entity_id', 'past-' || g, 'previous_state', 'processing'),
               t, t, nextval('outbox_commit_seq'), t, t + interval '1 second', 'msg_past_' || g
          FROM generate_series(1, rows) g
         CROSS JOIN LATERAL (SELECT lo + step * g / (rows + 1) AS t) x;
        hi := lo;
    END LOOP;
END $$`

// addPastPartitions adds n older partitions of delivered rows (see
// pastPartitionsSQL).
func addPastPartitions(ctx context.Context, pool *pgxpool.Pool, n int) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('bench.past_partitions', $1, true), set_config('bench.past_partition_rows', $2, true)`,
			strconv.Itoa(n), strconv.Itoa(pastPartitionRows)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, pastPartitionsSQL)
		return err
	})
	if err != nil {
		return fmt.Errorf("add %d past outbox partitions: %w", n, err)
	}
	return nil
}
