package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mediaplatform/relay/internal/relayproc"
)

// sequencerSizes are the step sizes the sequencer scenario times: from a
// quiet outbox's single row to the most one step numbers (5,000, the
// relay's sequencer.Config.Batch default).
var sequencerSizes = []int{1, 10, 100, 1000, 5000}

// sequencerMaxSteps bounds the steps timed per size.
const sequencerMaxSteps = 200

// sequenceStepSQL is one numbering step, as internal/sequencer runs it.
const sequenceStepSQL = `SELECT outbox_sequence($1) AS bench_marker`

// SequencerResult is the numbering step (outbox_sequence, migration
// 00003) timed on its own, on one connection, with no relay running: the
// serialized part of every deployment on one database.
type SequencerResult struct {
	Scenario    string          `json:"scenario"`
	Rows        int             `json:"rows"`
	Sizes       []SequencerStep `json:"sizes"`
	LoadAtStart string          `json:"load_average_1m_at_start,omitempty"`
	MachineBusy *float64        `json:"machine_busy,omitempty"`
}

// SequencerStep is the cost of steps of one size.
type SequencerStep struct {
	RowsPerStep int     `json:"rows_per_step"`
	Steps       int     `json:"steps"`
	MeanMS      float64 `json:"mean_ms"`
	MaxMS       float64 `json:"max_ms"`
	// CPUMeanMS is the backend's CPU per step (nil when the cluster is not
	// on this machine); /proc counts in 10 ms ticks, so it is coarse for
	// small steps.
	CPUMeanMS *float64 `json:"backend_cpu_mean_ms,omitempty"`
	// RowsPerSec is the rate at which steps of this size, run back to
	// back, number rows: the cap the step puts on one database.
	RowsPerSec float64 `json:"rows_per_sec_back_to_back"`
}

// sequencerPlan gives each size about a fifth of rows, in at most
// sequencerMaxSteps steps, and leaves out sizes that would get fewer than
// two steps.
func sequencerPlan(rows int) (sizes, steps []int, total int) {
	budget := rows / len(sequencerSizes)
	for _, k := range sequencerSizes {
		n := min(budget/k, sequencerMaxSteps)
		if n < 2 {
			continue
		}
		sizes, steps = append(sizes, k), append(steps, n)
		total += k * n
	}
	return sizes, steps, total
}

// sequencer writes a backlog of committed, unnumbered rows and times
// numbering steps of each size over it.
func (b *bench) sequencer(ctx context.Context) (_ SequencerResult, err error) {
	res := SequencerResult{Scenario: "sequencer", LoadAtStart: relayproc.Load1()}
	sizes, steps, total := sequencerPlan(b.opts.rows)
	if total == 0 {
		return res, fmt.Errorf("sequencer: -rows %d leaves no step size two steps", b.opts.rows)
	}
	res.Rows = total
	sch, err := b.newSchema(ctx, "bench_sequencer", 2)
	if err != nil {
		return res, err
	}
	defer b.dropSchema(sch)
	if err := insertPlan(ctx, sch.pool, b.runID, planBacklog(layoutRealistic, total, 0), true); err != nil {
		return res, err
	}
	conn, err := sch.pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("sequencer: %w", err)
	}
	defer conn.Release()
	pid := int(conn.Conn().PgConn().PID())
	cpu := func() (time.Duration, bool) {
		if b.pg == nil {
			return 0, false
		}
		t, err := relayproc.CPUTicks(pid, false)
		return relayproc.TicksToDuration(t), err == nil
	}
	m, err := b.mark()
	if err != nil {
		return res, err
	}
	for i, k := range sizes {
		st := SequencerStep{RowsPerStep: k, Steps: steps[i]}
		cpu0, cpuOK := cpu()
		var sum time.Duration
		for range steps[i] {
			var n int
			t := time.Now()
			if err := conn.QueryRow(ctx, sequenceStepSQL, k).Scan(&n); err != nil {
				return res, fmt.Errorf("sequencer: step of %d rows: %w", k, err)
			}
			d := time.Since(t)
			if n != k {
				return res, fmt.Errorf("sequencer: a step of %d numbered %d rows", k, n)
			}
			sum += d
			st.MaxMS = max(st.MaxMS, ms(d))
		}
		st.MeanMS = ms(sum) / float64(st.Steps)
		st.RowsPerSec = float64(k*st.Steps) / sum.Seconds()
		if cpu1, ok := cpu(); ok && cpuOK {
			v := ms(cpu1-cpu0) / float64(st.Steps)
			st.CPUMeanMS = &v
		}
		res.Sizes = append(res.Sizes, st)
	}
	res.MachineBusy = b.usageSince(m, relayproc.Usage{}, total).MachineBusy
	return res, nil
}
