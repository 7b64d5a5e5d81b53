package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

// busy shows the machine's busy share.
func busy(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100**v)
}

func optF(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

func (r *report) printTable(out io.Writer) {
	m := r.Machine
	fmt.Fprintf(out, "\nmachine: nproc %d, %s, memory %s, %s; PostgreSQL %s (fsync %s, synchronous_commit %s, full_page_writes %s, shared_buffers %s); load average at start %s, at end %s\n",
		m.CPUs, m.CPUModel, m.MemTotal, m.GoVersion, m.PostgresVersion, m.PostgresFsync, m.PostgresSyncCommt, m.PostgresFPW, m.PostgresBuffers, m.LoadAvg, m.LoadAvgEnd)
	db := "a database of its own (" + m.OwnDatabase + ")"
	if m.OwnDatabase == "" {
		db = "the given database (shared: statement and backend counts include other clients)"
	}
	pgCPU := "PostgreSQL CPU from /proc (backends of the bench's database; cluster = every process of the cluster)"
	if !m.PostgresLocalCPU {
		pgCPU = "PostgreSQL CPU unavailable (the cluster is not on this machine or not readable)"
	}
	fmt.Fprintf(out, "bench: %s; stmts/row = %s; %s\n", db, m.StatementsSource, pgCPU)
	s := r.Settings
	fmt.Fprintf(out, "relay and River reference: concurrency (MaxWorkers) %d, queue FetchCooldown %s, FetchPollInterval %s; relay log level %s; drains cut after %s",
		s.Concurrency, s.FetchCooldown, s.FetchPollInterval, s.RelayLogLevel, s.DrainCut)
	if len(s.RelayEnv) > 0 {
		fmt.Fprintf(out, "; env %s", strings.Join(s.RelayEnv, " "))
	}
	fmt.Fprintln(out)

	if rv := r.River; rv != nil {
		fmt.Fprintf(out, "\n== river-noop: %d no-op jobs, worked down by River in the bench process\n", rv.Rows)
		pg := "-"
		if rv.PostgresCPUPer1k != nil {
			pg = fmt.Sprintf("%.0f", *rv.PostgresCPUPer1k*1000) // seconds per 1,000 jobs = ms per job
		}
		fmt.Fprintf(out, "   %.0f jobs/s (%.2f s); bench CPU %.0f µs/job; PostgreSQL cluster CPU %s µs/job; machine busy %.0f%%\n",
			rv.RowsPerSec, rv.Seconds, rv.BenchCPUPer1k*1000, pg, 100*rv.CPUBusy)
	}
	if sv := r.Svix; sv != nil {
		fmt.Fprintf(out, "\n== svix-noop: %d sends through the relay's Svix sender to the fake Svix at 0 ms, %d in flight, no database, in the bench process\n",
			sv.Rows, r.Settings.Concurrency)
		fmt.Fprintf(out, "   %.0f sends/s (%.2f s); bench CPU (client and fake) %.0f µs/send; machine busy %s\n",
			sv.RowsPerSec, sv.Seconds, sv.BenchCPUPer1k*1000, busy(sv.MachineBusy))
		if rv := r.River; rv != nil && rv.RowsPerSec > 0 {
			c := ceiling(rv.RowsPerSec, sv.RowsPerSec)
			fmt.Fprintf(out, "   ceiling: rows that each cost one River no-op job and one send drain at %.0f rows/s here, %.2f × River;", c, c/rv.RowsPerSec)
			// At 0.5 × River a row may cost the machine 2/River; the send takes 1/svix of it.
			if left := 2/rv.RowsPerSec - 1/sv.RowsPerSec; left > 0 {
				fmt.Fprintf(out, " 0.50 × River leaves everything but the send %.2f of a no-op job\n", left*rv.RowsPerSec)
			} else {
				fmt.Fprintf(out, " sends alone are slower than 0.50 × River\n")
			}
		}
	}
	for i := range r.Drains {
		r.printDrain(out, &r.Drains[i])
	}
	if c := r.RateCap; c != nil {
		r.printDrain(out, c)
		fmt.Fprintf(out, "   rate cap %.0f msg/s: %.1f msg/s between the first and last message\n", c.RateLimit, c.SteadyPerSec)
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(out, "\n== latency: %d rows at %.0f rows/s (%.1f achieved) from %d connections (single-row autocommit INSERTs), ordering %s\n",
			l.Rows, l.TargetRate, l.AchievedRate, l.Conns, l.Ordering)
		fmt.Fprintf(out, "   commit -> Svix: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms, mean %.1f ms; %d of %d delivered\n",
			l.P50MS, l.P95MS, l.P99MS, l.MaxMS, l.MeanMS, l.Delivered, l.Rows)
		for _, st := range l.Stages {
			fmt.Fprintf(out, "     %s: p50 %.1f ms, p99 %.1f ms\n", st.Stage, st.P50MS, st.P99MS)
		}
		fmt.Fprintf(out, "   relay CPU %.0f µs/row; relay logged %d warnings, %d errors\n", l.RelayCPUPer1k*1000, l.RelayWarnings, l.RelayErrors)
		r.printUsage(out, &l.Usage, 1, l.RelayPeakHeapMiB, l.LoadAtStart)
		printStatements(out, l.Sequencer, l.Statements, 1)
	}
	if p := r.Producers; p != nil {
		fmt.Fprintf(out, "\n== producers: %d producers, each transaction writes %d rows of %d shared assets in random order, relay running (ordering asset)\n",
			p.Producers, p.RowsPerTx, p.Assets)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "   mode\ttx committed\ttx/s\ttx p50 ms\ttx p99 ms\terrors\tdeadlocks 40P01\tkey waits on producers\ton relay/others\ton NOTIFY/extension\twaiting ms (sampled)\terrors by SQLSTATE\t")
		for _, m := range p.Modes {
			fmt.Fprintf(tw, "   %s\t%d\t%.0f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%.0f\t%v\t\n", m.Mode, m.Txs, m.TxPerSec, m.TxP50MS, m.TxP99MS,
				m.errorCount(), m.Deadlocks, m.WaitsOnProducers, m.WaitsOnOthers, m.WaitsOnCommon, m.WaitSampledMS, m.Errors)
		}
		tw.Flush()
		fmt.Fprintf(out, "   %d of %d committed rows reached Svix; load at start %s; relay logged %d warnings, %d errors\n",
			p.Delivered, p.Committed, p.LoadAtStart, p.RelayWarnings, p.RelayErrors)
	}

	if q := r.Sequencer; q != nil {
		fmt.Fprintf(out, "\n== sequencer: the numbering step (SELECT outbox_sequence(k)) on one connection over %d committed rows, no relay running; load at start %s, machine busy %s\n",
			q.Rows, q.LoadAtStart, busy(q.MachineBusy))
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "   rows per step\tsteps\tms per step\tmax ms\tbackend CPU ms per step\trows/s back to back\t")
		for _, s := range q.Sizes {
			fmt.Fprintf(tw, "   %d\t%d\t%.2f\t%.2f\t%s\t%.0f\t\n", s.RowsPerStep, s.Steps, s.MeanMS, s.MaxMS, optF(s.CPUMeanMS, "%.2f"), s.RowsPerSec)
		}
		tw.Flush()
	}

	r.printSummary(out)

	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tgoal\tmeasured\tmet")
	for _, t := range r.Targets {
		met := "yes"
		if !t.Met {
			met = "NO"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Figure, t.Target, t.Measured, met)
	}
	tw.Flush()
	fmt.Fprintf(out, "\ntotal %.0f s (%s)\n\n", r.TotalSeconds, time.Duration(r.TotalSeconds*float64(time.Second)).Round(time.Second))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// printUsage prints the relays' memory and where the CPU went.
func (r *report) printUsage(out io.Writer, u *Usage, replicas int, peakHeap float64, load string) {
	peaks := make([]string, 0, len(u.RelayPeakRSSPerReplicaMiB))
	for _, p := range u.RelayPeakRSSPerReplicaMiB {
		peaks = append(peaks, f1(p))
	}
	if len(peaks) == 0 {
		peaks = append(peaks, f1(u.RelayPeakRSSMiB))
	}
	each := ""
	if replicas > 1 {
		each = " (each replica)"
	}
	fmt.Fprintf(out, "   relay: peak RSS %s MiB%s, peak heap %.0f MiB; load at start %s\n", strings.Join(peaks, " / "), each, peakHeap, load)
	machine := "-"
	if u.MachineBusy != nil {
		machine = fmt.Sprintf("%.0f%%", 100**u.MachineBusy)
	}
	fmt.Fprintf(out, "   CPU over %.2f s: relay %.2f s (%s), PostgreSQL backends %s s (cluster %s s), bench and fake Svix %.2f s; these %.0f%% of %d cores; machine busy %s (every process, /proc/stat)\n",
		u.WallSeconds, u.RelayCPUSeconds, plural(max(replicas, 1), "process", "processes summed"), optF(u.PostgresBackendCPUSeconds, "%.2f"), optF(u.PostgresCPUSeconds, "%.2f"),
		u.BenchCPUSeconds, 100*u.CPUBusy, r.Machine.CPUs, machine)
}

// printStatements prints the numbering step's cost and the statements
// that took the most execution time.
func printStatements(out io.Writer, seq *SequencerCost, top []StatementCost, replicas int) {
	if seq != nil {
		waits := ""
		if replicas > 1 {
			waits = " (with several relays: including waits for the step's lock)"
		}
		fmt.Fprintf(out, "   numbering step (outbox_sequence): %d steps, %.2f ms each%s, %.1f rows per step, %.1f µs per row: back to back, steps like these number %.0f rows/s\n",
			seq.Steps, seq.MeanMS, waits, seq.RowsStep, seq.USPerRow, seq.CapRowsPerSec)
	}
	if len(top) == 0 {
		return
	}
	fmt.Fprintln(out, "   statements by execution time (pg_stat_statements; wall time in the server, summed over backends):")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "     ms\tcalls\tms/call\tµs/row\tquery")
	for _, s := range top {
		q := s.Query
		if len(q) > 100 {
			q = q[:100] + "..."
		}
		fmt.Fprintf(tw, "     %.0f\t%d\t%.3f\t%.1f\t%s\n", s.TotalMS, s.Calls, s.MeanMS, s.USPerRow, q)
	}
	tw.Flush()
}

func (r *report) printDrain(out io.Writer, d *DrainResult) {
	fmt.Fprintf(out, "\n== %s: %d rows, %s layout (%d keys, %d with several rows), %s, ordering %s, Svix %d ms, %s\n",
		d.Scenario, d.Rows, d.Layout, d.Keys, d.MultiRowKeys, d.Stats, d.Ordering, d.SvixLatencyMS, plural(max(d.Replicas, 1), "relay process", "relay processes"))
	cut := ""
	if !d.Complete {
		cut = fmt.Sprintf(" (CUT after %.0f s)", d.CutAfterSecs)
	}
	ratio := ""
	if d.VsRiver > 0 {
		ratio = fmt.Sprintf(", %.2f × River", d.VsRiver)
	}
	fmt.Fprintf(out, "   %d of %d rows at Svix in %.2f s%s: %.0f rows/s%s; backlog inserted in %.1f s", d.Delivered, d.Rows, d.Seconds, cut, d.RowsPerSec, ratio, d.InsertSecs)
	if d.RecordedSeconds > 0 {
		fmt.Fprintf(out, "; all recorded delivered after %.2f s", d.RecordedSeconds)
	}
	fmt.Fprintln(out)
	if t := d.ToSvix; t != nil {
		fmt.Fprintf(out, "   relay start -> Svix, per row: p50 %.0f ms, p99 %.0f ms, max %.0f ms\n", t.P50MS, t.P99MS, t.MaxMS)
	}
	if n := d.NextRow; n != nil {
		fmt.Fprintf(out, "   next row of a key after its predecessor: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d pairs, %d censored at the cut, %d out of order)\n",
			n.P50MS, n.P99MS, n.MaxMS, n.Count, n.Censored, n.OutOfOrder)
	}
	r.printUsage(out, &d.Usage, d.Replicas, d.RelayPeakHeapMiB, d.LoadAtStart)
	if d.BusyElsewhere > 0 {
		fmt.Fprintf(out, "   %d backends busy in other databases of the cluster\n", d.BusyElsewhere)
	}
	if c := d.Cost; c != nil {
		hot := "-"
		if c.HOTRatio != nil {
			hot = fmt.Sprintf("%.0f%%", 100**c.HOTRatio)
		}
		fmt.Fprintf(out, "   PostgreSQL per delivered row: WAL %.0f B, %.2f statements, relay CPU %.0f µs, backends CPU %s µs, cluster CPU %s µs; outbox updates %d (HOT %s)\n",
			c.WALBytesPerRow, c.StmtsPerRow, c.RelayUSPerRow, optF(c.PostgresUSPerRow, "%.0f"), optF(c.ClusterUSPerRow, "%.0f"), c.OutboxUpdates, hot)
		if !d.Complete {
			fmt.Fprintln(out, "   (cut: the cost per delivered row includes the work done so far on rows claimed but not yet delivered)")
		}
		printStatements(out, c.Sequencer, c.Statements, d.Replicas)
	}
	fmt.Fprintf(out, "   svix answers %v", d.Status)
	if d.RelayWarnings+d.RelayErrors > 0 {
		fmt.Fprintf(out, "; relay logged %d warnings and %d errors", d.RelayWarnings, d.RelayErrors)
	}
	fmt.Fprintln(out)
}

// printSummary prints one line per scenario.
func (r *report) printSummary(out io.Writer) {
	fmt.Fprintln(out, "\nsummary (p50/p99: drains, relay start -> Svix per row; next-row, a key's next row after its predecessor; latency, commit -> Svix; producers, transaction time)")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trows\trows/s\tvs River\tp50 ms\tp99 ms\tWAL B/row\tstmts/row\trelay µs/row\tpg µs/row\tHOT\tRSS MiB\tbusy\tload\t")
	if rv := r.River; rv != nil {
		fmt.Fprintf(tw, "river-noop\t%d\t%.0f\t1.00\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t-\t\n", rv.Rows, rv.RowsPerSec, busy(rv.MachineBusy))
	}
	if sv := r.Svix; sv != nil {
		vs := "-"
		if r.River != nil && r.River.RowsPerSec > 0 {
			vs = fmt.Sprintf("%.2f", sv.RowsPerSec/r.River.RowsPerSec)
		}
		fmt.Fprintf(tw, "svix-noop\t%d\t%.0f\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t%s\t-\t\n", sv.Rows, sv.RowsPerSec, vs, busy(sv.MachineBusy))
	}
	drains := append([]DrainResult{}, r.Drains...)
	if r.RateCap != nil {
		drains = append(drains, *r.RateCap)
	}
	for _, d := range drains {
		rate := fmt.Sprintf("%.0f", d.RowsPerSec)
		if !d.Complete {
			rate += " (cut)"
		}
		ratio := "-"
		if d.VsRiver > 0 {
			ratio = fmt.Sprintf("%.2f", d.VsRiver)
		}
		p50, p99 := "-", "-"
		if t := d.ToSvix; t != nil {
			p50, p99 = fmt.Sprintf("%.0f", t.P50MS), fmt.Sprintf("%.0f", t.P99MS)
		}
		if d.Scenario == "next-row" && d.NextRow != nil && d.NextRow.Count > 0 {
			p50, p99 = f1(d.NextRow.P50MS), f1(d.NextRow.P99MS)
		}
		wal, stmts, relay, pg, hot := "-", "-", "-", "-", "-"
		if c := d.Cost; c != nil {
			wal, stmts, relay, pg = fmt.Sprintf("%.0f", c.WALBytesPerRow), fmt.Sprintf("%.2f", c.StmtsPerRow), fmt.Sprintf("%.0f", c.RelayUSPerRow), optF(c.PostgresUSPerRow, "%.0f")
			if c.HOTRatio != nil {
				hot = fmt.Sprintf("%.0f%%", 100**c.HOTRatio)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", d.Scenario, d.Rows, rate, ratio, p50, p99, wal, stmts, relay, pg, hot, f1(d.RelayPeakRSSMiB), busy(d.MachineBusy), d.LoadAtStart)
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(tw, "latency\t%d\t%.0f\t-\t%.1f\t%.1f\t-\t-\t%.0f\t-\t-\t%s\t%s\t%s\t\n", l.Rows, l.AchievedRate, l.P50MS, l.P99MS, l.RelayCPUPer1k*1000, f1(l.RelayPeakRSSMiB), busy(l.MachineBusy), l.LoadAtStart)
	}
	if p := r.Producers; p != nil {
		for _, m := range p.Modes {
			fmt.Fprintf(tw, "producers/%s\t%d\t%.0f\t-\t%.1f\t%.1f\t-\t-\t-\t-\t-\t-\t-\t%s\t\n", m.Mode, m.Rows, float64(m.Rows)/m.Seconds, m.TxP50MS, m.TxP99MS, p.LoadAtStart)
		}
	}
	tw.Flush()
}
