package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// The outbox is partitioned by time (migration 00008). Every replica keeps
// partitions ready ahead of the clock: an INSERT whose time has no
// partition fails (there is no DEFAULT partition), so this runs at start
// and every partitionCheckInterval, from every replica, not only the
// leader: outbox_partitions_create() takes turns under an advisory lock
// and creates nothing when the partitions are there. The leader's
// retention job drops old ones (prune.go).

// notAhead bounds the relay's reads of the outbox to the partitions that
// can hold rows: none is written ahead of the clock (partition_at is the
// inserting transaction's start), so the partitions made ahead are pruned
// when a statement starts, instead of probed once per row looked up by id
// or key (measured: 10 partitions, 8 of them ahead, cost a third more
// PostgreSQL CPU per delivered row without it). The minute of slack covers
// a row whose transaction began a moment after this statement (it
// committed before the statement's snapshot) and small clock corrections.
// The database's clock must not step back further: a row written before
// such a jump is invisible to these reads until the clock passes its
// partition_at again (the periodic rescan then claims it), and meanwhile
// later rows of its key may be sent before it.
const notAhead = `statement_timestamp() + interval '1 minute'`

// partitionCheckInterval is how often a replica makes sure partitions are
// ready; far shorter than a partition (a minute at least, a day by
// default), so a replica keeps up even with the soak test's settings.
const partitionCheckInterval = 30 * time.Second

// partitionsLowWater is the number of partitions ahead under which the
// relay warns (and operators alert, on relay_outbox_partitions_ahead).
const partitionsLowWater = 2

const (
	createPartitionsSQL = `SELECT outbox_partitions_create()`
	// partitionCountsSQL counts the partitions and those that start after
	// now (ready ahead).
	partitionCountsSQL = `SELECT count(*), count(*) FILTER (WHERE from_time > now()) FROM outbox_partitions`
)

// partitionMetrics are the partition gauges and counters.
type partitionMetrics struct {
	partitions prometheus.Gauge
	ahead      prometheus.Gauge
	kept       prometheus.Gauge
	dropped    prometheus.Counter
	moved      prometheus.Counter
}

func newPartitionMetrics(reg prometheus.Registerer) *partitionMetrics {
	m := &partitionMetrics{
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_outbox_partitions",
			Help: "Partitions of the outbox (sampled).",
		}),
		ahead: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_outbox_partitions_ahead",
			Help: "Partitions of the outbox ready after the current one (sampled); producers' INSERTs fail once none is left.",
		}),
		kept: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_outbox_partitions_kept",
			Help: "Partitions past the retention period kept by pending, in-flight or recently delivered rows, at the last retention run (set by the leader).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_outbox_partitions_dropped_total",
			Help: "Partitions of the outbox dropped by retention.",
		}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_outbox_failed_rows_moved_total",
			Help: "Failed rows moved out of a partition retention was about to drop.",
		}),
	}
	reg.MustRegister(m.partitions, m.ahead, m.kept, m.dropped, m.moved)
	return m
}

// partitionLoop keeps partitions ready until ctx ends.
func (r *Relay) partitionLoop(ctx context.Context) {
	t := time.NewTicker(partitionCheckInterval)
	defer t.Stop()
	for {
		r.ensurePartitions(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Relay) ensurePartitions(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, partitionCheckInterval)
	defer cancel()
	var made int
	if err := r.pool.QueryRow(ctx, createPartitionsSQL).Scan(&made); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgerrcode.UndefinedFunction {
			// The schema is older than migration 00008 (relay migrate
			// has not run yet): nothing is partitioned.
			return
		}
		if ctx.Err() == nil {
			r.log.Error("create outbox partitions ahead failed; producers' INSERTs fail once none is left", zap.Error(err))
		}
		return
	}
	if made > 0 {
		r.log.Info("created outbox partitions ahead", zap.Int("partitions", made))
	}
	var total, ahead int64
	if err := r.pool.QueryRow(ctx, partitionCountsSQL).Scan(&total, &ahead); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("count outbox partitions failed", zap.Error(err))
		}
		return
	}
	r.metrics.part.partitions.Set(float64(total))
	r.metrics.part.ahead.Set(float64(ahead))
	if ahead < partitionsLowWater {
		r.log.Warn("few outbox partitions ready ahead", zap.Int64("partitions_ahead", ahead))
	}
}

// Lookups by id (a batch job's read of its rows, its outcomes, the claim
// that marks rows, a hand-back) are bounded below and above by the
// partition_at of the rows looked up, so PostgreSQL prunes every other
// partition when the statement starts, generic plans included: without a
// bound each id probes the primary key of every partition not ahead, and a
// week of retention keeps eight of them. The bound comes from the rows
// themselves, read where they are claimed (admission, rescan, succession),
// and travels in the job's args (BatchArgs.PartitionFromUS/ToUS). It stays
// true for as long as a job owns a row: a row's partition_at changes only
// when retention moves a failed row, which no job owns (a replay hands it
// back, and the claim that takes it again reads its new partition_at).

// claimed is a row a claim hands to a job: its id and partition_at.
type claimed struct {
	id int64
	at pgtype.Timestamptz
}

// partSpan is the range of partition_at over a set of rows, in Unix
// microseconds. An open span bounds nothing: a job made before spans
// existed, or a row at ±infinity (outbox_legacy holds the rows written
// before the outbox was partitioned at -infinity).
type partSpan struct {
	lo, hi int64
	n      int
	open   bool
}

// openSpan bounds nothing.
func openSpan() partSpan { return partSpan{open: true} }

// add widens s to cover a row's partition_at.
func (s *partSpan) add(at pgtype.Timestamptz) {
	if !at.Valid || at.InfinityModifier != pgtype.Finite {
		s.open = true
		return
	}
	us := at.Time.UnixMicro()
	if s.n == 0 || us < s.lo {
		s.lo = us
	}
	if s.n == 0 || us > s.hi {
		s.hi = us
	}
	s.n++
}

// spanOf is the span of rows.
func spanOf(rows []claimed) partSpan {
	var s partSpan
	for _, c := range rows {
		s.add(c.at)
	}
	return s
}

// bounds are the span's lower and upper bounds as statement parameters:
// -infinity and infinity when it is open or empty.
func (s partSpan) bounds() (lo, hi pgtype.Timestamptz) {
	if s.open || s.n == 0 {
		return pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true},
			pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	}
	return pgtype.Timestamptz{Time: time.UnixMicro(s.lo), Valid: true},
		pgtype.Timestamptz{Time: time.UnixMicro(s.hi), Valid: true}
}

// batchArgs are the args of a job for rows.
func batchArgs(rows []claimed) BatchArgs {
	a := BatchArgs{IDs: make([]int64, len(rows))}
	for i, c := range rows {
		a.IDs[i] = c.id
	}
	if s := spanOf(rows); !s.open && s.n > 0 {
		a.PartitionFromUS, a.PartitionToUS = &s.lo, &s.hi
	}
	return a
}

// span is the span the args carry; open for a job made before spans.
func (a BatchArgs) span() partSpan {
	if a.PartitionFromUS == nil || a.PartitionToUS == nil {
		return openSpan()
	}
	return partSpan{lo: *a.PartitionFromUS, hi: *a.PartitionToUS, n: len(a.IDs)}
}
