package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/mediaplatform/relay/internal/relayproc"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// drainSpec is one backlog drain.
type drainSpec struct {
	name        string
	rows        int
	layout      string // layoutDistinct, layoutRealistic, layoutSingle, layoutFewKeys
	keys        int    // keys of layoutFewKeys
	analyze     bool   // ANALYZE after the bulk insert (fresh statistics)
	svixLatency time.Duration
	ordering    string // RELAY_ORDERING: asset or off
	rateLimit   float64
	replicas    int // relay processes (at least 1)
	// pastPartitions adds that many partitions before the ones a fresh
	// schema has, each holding pastPartitionRows delivered rows: what a
	// week of retention leaves in production, so that a statement that
	// probes every partition not ahead pays for them as it would there.
	pastPartitions int
}

// Delay is a distribution of one measure, in milliseconds.
type Delay struct {
	Count int     `json:"count"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// Censored counts values that had not ended when the drain was cut:
	// they enter the distribution as lower bounds (time until the cut).
	Censored int `json:"censored,omitempty"`
}

func delayOf(d []time.Duration, censored int) *Delay {
	if len(d) == 0 {
		return nil
	}
	slices.Sort(d)
	return &Delay{Count: len(d), P50MS: ms(pct(d, 0.5)), P99MS: ms(pct(d, 0.99)), MaxMS: ms(d[len(d)-1]), Censored: censored}
}

// NextRow is how long a key's next row took to reach Svix after its
// predecessor did, over keys with several rows.
type NextRow struct {
	Delay
	// OutOfOrder counts rows Svix accepted before their key's predecessor:
	// 0 whenever ordering is on.
	OutOfOrder int `json:"out_of_order"`
}

// drainLimit is how long a drain may run: the cut when one is set,
// otherwise long enough for 50 rows/s.
func (b *bench) drainLimit(rows int) time.Duration {
	if b.opts.drainCut > 0 {
		return b.opts.drainCut
	}
	return time.Duration(rows/50)*time.Second + time.Minute
}

// drain writes a backlog with the relay stopped, then times the relay from
// its start until Svix holds every row, or until the drain is cut (then the
// rate is that of the rows delivered so far).
func (b *bench) drain(ctx context.Context, spec drainSpec) (_ DrainResult, err error) {
	spec.replicas = max(spec.replicas, 1)
	res := DrainResult{Scenario: spec.name, Replicas: spec.replicas, Rows: spec.rows, SvixLatencyMS: int(spec.svixLatency / time.Millisecond),
		Ordering: spec.ordering, RateLimit: spec.rateLimit, Layout: spec.layout, Stats: "fresh (ANALYZE after insert)"}
	if !spec.analyze {
		res.Stats = "stale (no ANALYZE; autoanalyze off on outbox, autovacuum on)"
	}
	run := &relayRun{name: spec.name}
	defer run.close(b)

	if run.sch, err = b.newSchema(ctx, "bench_"+sanitize(spec.name), 4); err != nil {
		return res, err
	}
	if spec.pastPartitions > 0 {
		if err := addPastPartitions(ctx, run.sch.pool, spec.pastPartitions); err != nil {
			return res, err
		}
	}
	if err := b.prunePast(ctx, run.sch); err != nil {
		return res, err
	}
	if !spec.analyze {
		if _, err := run.sch.pool.Exec(ctx, noAnalyzeSQL); err != nil {
			return res, fmt.Errorf("keep autoanalyze off outbox: %w", err)
		}
	}
	plan := planBacklog(spec.layout, spec.rows, spec.keys)
	res.Keys, res.MultiRowKeys = plan.nkeys, plan.multiRowKeys()
	t := time.Now()
	if err := insertPlan(ctx, run.sch.pool, b.runID, plan, spec.analyze); err != nil {
		return res, err
	}
	res.InsertSecs = time.Since(t).Seconds()
	if run.fake, err = b.newFake(); err != nil {
		return res, err
	}
	run.fake.SetLatency(spec.svixLatency, 0)
	if spec.rateLimit > 0 {
		run.fake.SetRateLimit(int(spec.rateLimit))
	}
	extra := []string{"RELAY_ORDERING=" + spec.ordering}
	if spec.rateLimit > 0 {
		extra = append(extra, "RELAY_RATE_LIMIT="+strconv.FormatFloat(spec.rateLimit, 'f', -1, 64))
	}

	res.LoadAtStart = relayproc.Load1()
	res.BusyElsewhere = b.busyElsewhere(ctx)
	before, err := b.snap(ctx, run.sch.name)
	if err != nil {
		return res, err
	}
	m, err := b.mark()
	if err != nil {
		return res, err
	}
	start := time.Now()
	for i := range spec.replicas {
		file := spec.name
		if spec.replicas > 1 {
			file = fmt.Sprintf("%s-r%d", spec.name, i+1)
		}
		p, err := relayproc.Start(b.relayBin, relayArgs, b.relayEnv(file, run.fake, run.sch, extra...), filepath.Join(b.tmp, file+".log"))
		if err != nil {
			return res, err
		}
		run.reps = append(run.reps, p)
	}
	limit := b.drainLimit(spec.rows)
	werr := waitFor(ctx, run.fake, limit, func(s *svixfake.Server) bool { return s.MessageCount() >= spec.rows }, run.reps...)
	elapsed := time.Since(start)
	res.Delivered = run.fake.MessageCount()
	switch {
	case werr == nil:
		res.Complete = true
	case ctx.Err() != nil:
		return res, ctx.Err()
	case run.reps.dead():
		return res, fmt.Errorf("%s: %d of %d rows reached svix: %w", spec.name, res.Delivered, spec.rows, werr)
	case b.opts.drainCut == 0:
		return res, fmt.Errorf("%s: %d of %d rows reached svix within %s: %w", spec.name, res.Delivered, spec.rows, limit, werr)
	default:
		res.CutAfterSecs = limit.Seconds()
		b.logf("%s: cut after %s with %d of %d rows at svix", spec.name, limit, res.Delivered, spec.rows)
	}
	relay, peaks, err := run.reps.usage()
	if err != nil {
		return res, err
	}
	res.Usage = b.usageSince(m, relay, max(res.Delivered, 1))
	res.RelayPeakRSSPerReplicaMiB = peaks
	res.Seconds = elapsed.Seconds()
	res.RowsPerSec = float64(res.Delivered) / elapsed.Seconds()
	if res.Complete {
		wctx, cancel := context.WithTimeout(ctx, limit)
		err := b.waitRecorded(wctx, run.sch.pool)
		cancel()
		if err != nil {
			return res, fmt.Errorf("%s: %w", spec.name, err)
		}
		res.RecordedSeconds = time.Since(start).Seconds()
	}
	backends := b.backendCPU()
	relay, peaks, err = run.reps.usage()
	if err != nil {
		return res, err
	}
	res.RelayPeakRSSMiB, res.RelayPeakRSSPerReplicaMiB = float64(relay.PeakRSSKiB)/1024, peaks
	run.reps.stop(b, spec.name, 30*time.Second)
	res.RelayWarnings, res.RelayErrors, res.RelayPeakHeapMiB = run.reps.logSummary()
	run.reps = nil
	b.waitRelayGone(ctx)
	after, err := b.snap(ctx, run.sch.name)
	if err != nil {
		return res, err
	}
	res.BusyElsewhere = max(res.BusyElsewhere, b.busyElsewhere(ctx))
	c, err := b.cost(ctx, before, after, backends, relay.CPU-m.relay, res.Delivered)
	if err != nil {
		return res, err
	}
	res.Cost = &c

	res.Status = statusMap(run.fake)
	msgs := run.fake.AllMessages()
	res.Messages = len(msgs)
	if spec.rateLimit > 0 && len(msgs) > 1 {
		first, last := msgs[0].Timestamp, msgs[0].Timestamp
		for _, msg := range msgs {
			if msg.Timestamp.Before(first) {
				first = msg.Timestamp
			}
			if msg.Timestamp.After(last) {
				last = msg.Timestamp
			}
		}
		if span := last.Sub(first); span > 0 {
			res.SteadyPerSec = float64(len(msgs)-1) / span.Seconds()
		}
	}
	if res.Complete && res.Messages != spec.rows {
		return res, fmt.Errorf("%s: svix holds %d messages for %d rows", spec.name, res.Messages, spec.rows)
	}
	dels, err := deliveries(msgs)
	if err != nil {
		return res, fmt.Errorf("%s: %w", spec.name, err)
	}
	// Time to Svix: from the relay's start to each row's acceptance.
	toSvix := make([]time.Duration, 0, len(dels))
	for _, d := range dels {
		toSvix = append(toSvix, time.UnixMicro(d.atUS).Sub(start))
	}
	res.ToSvix = delayOf(toSvix, 0)
	if res.MultiRowKeys > 0 {
		res.NextRow = nextRowDelays(dels, plan, start.Add(elapsed))
	}
	if dup := duplicates(dels); dup > 0 {
		return res, fmt.Errorf("%s: svix received %d rows more than once", spec.name, dup)
	}
	return res, nil
}

// deliveries reads which row each Svix message carries.
func deliveries(msgs []svixfake.Message) ([]delivery, error) {
	out := make([]delivery, 0, len(msgs))
	for _, m := range msgs {
		d, err := parseDelivery(m.AppUID, m.Payload)
		if err != nil {
			return nil, err
		}
		d.atUS = m.Timestamp.UnixMicro()
		out = append(out, d)
	}
	return out, nil
}

// duplicates counts rows delivered more than once.
func duplicates(dels []delivery) int {
	seen := make(map[int]bool, len(dels))
	n := 0
	for _, d := range dels {
		if seen[d.row] {
			n++
		}
		seen[d.row] = true
	}
	return n
}

// nextRowDelays measures, for each row whose key has a later row, the time
// from the row's acceptance by Svix to its successor's (the next row of
// the key in commit order, which is plan order). A successor not delivered
// by end counts as a lower bound (end - acceptance).
func nextRowDelays(dels []delivery, plan backlogPlan, end time.Time) *NextRow {
	at := make([]int64, len(plan.keys)) // Unix µs of acceptance; 0: not delivered
	for _, d := range dels {
		if d.row >= 0 && d.row < len(at) {
			at[d.row] = d.atUS
		}
	}
	last := make([]int, plan.nkeys) // previous row of each key + 1
	var delays []time.Duration
	censored, outOfOrder := 0, 0
	endUS := end.UnixMicro()
	for i, k := range plan.keys {
		prev := last[k] - 1
		last[k] = i + 1
		if prev < 0 || at[prev] == 0 {
			continue
		}
		switch {
		case at[i] == 0:
			censored++
			delays = append(delays, time.Duration(max(endUS-at[prev], 0))*time.Microsecond)
		case at[i] < at[prev]:
			outOfOrder++
		default:
			delays = append(delays, time.Duration(at[i]-at[prev])*time.Microsecond)
		}
	}
	d := delayOf(delays, censored)
	if d == nil {
		return &NextRow{OutOfOrder: outOfOrder}
	}
	return &NextRow{Delay: *d, OutOfOrder: outOfOrder}
}
