package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Machine describes where the figures were taken.
type Machine struct {
	CPUs              int    `json:"cpus"`
	CPUModel          string `json:"cpu_model"`
	MemTotal          string `json:"mem_total"`
	LoadAvg           string `json:"load_average_at_start"`
	GoVersion         string `json:"go_version"`
	PostgresVersion   string `json:"postgres_version"`
	PostgresFsync     string `json:"postgres_fsync"`
	PostgresSyncCommt string `json:"postgres_synchronous_commit"`
	PostgresLocalCPU  bool   `json:"postgres_cpu_measured"`
	pgDataDir         string
}

// Settings are the bench's knobs for this run.
type Settings struct {
	Rows              int      `json:"rows"`
	LatencyRate       float64  `json:"latency_rate"`
	LatencyDuration   string   `json:"latency_duration"`
	LatencyConns      int      `json:"latency_conns"`
	RateCap           float64  `json:"rate_cap"`
	RateCapRows       int      `json:"rate_cap_rows"`
	Concurrency       int      `json:"concurrency"`
	RelayLogLevel     string   `json:"relay_log_level"`
	RelayEnv          []string `json:"relay_env,omitempty"`
	ClientCooldown    string   `json:"river_client_fetch_cooldown"`
	FetchCooldown     string   `json:"river_queue_fetch_cooldown"`
	FetchPollInterval string   `json:"river_fetch_poll_interval"`
	Scenarios         []string `json:"scenarios"`
}

func settingsOf(o options) Settings {
	return Settings{
		Rows: o.rows, LatencyRate: o.latencyRate, LatencyDuration: o.latencyDuration.String(), LatencyConns: o.latencyConns,
		RateCap: o.rateCap, RateCapRows: o.rateCapRows, Concurrency: o.concurrency, RelayLogLevel: o.logLevel,
		RelayEnv: o.relayEnv, ClientCooldown: riverClientFetchCooldown.String(), FetchCooldown: riverQueueFetchCooldown.String(), FetchPollInterval: riverFetchPollInterval.String(),
		Scenarios: o.scenarios,
	}
}

func machineOf(ctx context.Context, b *bench) (Machine, error) {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(la))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	err := b.admin.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
	        current_setting('synchronous_commit'), coalesce(current_setting('data_directory', true), '')`).
		Scan(&m.PostgresVersion, &m.PostgresFsync, &m.PostgresSyncCommt, &m.pgDataDir)
	if err != nil {
		return m, fmt.Errorf("read postgres settings: %w", err)
	}
	m.PostgresLocalCPU = newPGCPU(m.pgDataDir) != nil
	return m, nil
}

// procField returns the value of the first "key : value" line of file.
func procField(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Target is one figure of the issue and whether this run met it.
type Target struct {
	Figure   string `json:"figure"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

type report struct {
	Machine      Machine        `json:"machine"`
	Settings     Settings       `json:"settings"`
	River        *DrainResult   `json:"river_noop,omitempty"`
	Drains       []DrainResult  `json:"drains,omitempty"`
	Latency      *LatencyResult `json:"latency,omitempty"`
	RateCap      *DrainResult   `json:"rate_cap,omitempty"`
	Targets      []Target       `json:"targets"`
	TotalSeconds float64        `json:"total_seconds"`
}

func (r *report) drain(name string) *DrainResult {
	for i := range r.Drains {
		if r.Drains[i].Scenario == name {
			return &r.Drains[i]
		}
	}
	return nil
}

// finish computes the ratios and checks the targets.
func (r *report) finish() {
	if r.River != nil && r.River.RowsPerSec > 0 {
		for i := range r.Drains {
			r.Drains[i].VsRiver = r.Drains[i].RowsPerSec / r.River.RowsPerSec
		}
	}
	add := func(figure, target, measured string, met bool) {
		r.Targets = append(r.Targets, Target{Figure: figure, Target: target, Measured: measured, Met: met})
	}
	if d := r.drain("drain-0ms"); d != nil {
		add("drain, Svix 0 ms", ">= 5000 rows/s", fmt.Sprintf("%.0f rows/s", d.RowsPerSec), d.RowsPerSec >= 5000)
		if r.River != nil {
			add("drain, Svix 0 ms / River no-op", ">= 0.50", fmt.Sprintf("%.2f (River %.0f jobs/s)", d.VsRiver, r.River.RowsPerSec), d.VsRiver >= 0.5)
		}
		if u := r.drain("drain-0ms-unordered"); u != nil {
			ratio := d.RowsPerSec / u.RowsPerSec
			add("ordering on / off, Svix 0 ms, keys distinct", ">= 0.90", fmt.Sprintf("%.2f (%.0f vs %.0f rows/s)", ratio, d.RowsPerSec, u.RowsPerSec), ratio >= 0.9)
		}
	}
	if d := r.drain("drain-50ms"); d != nil {
		add("drain, Svix 50 ms", ">= 2000 rows/s", fmt.Sprintf("%.0f rows/s", d.RowsPerSec), d.RowsPerSec >= 2000)
		if u := r.drain("drain-50ms-unordered"); u != nil {
			ratio := d.RowsPerSec / u.RowsPerSec
			add("ordering on / off, Svix 50 ms, keys distinct", ">= 0.90", fmt.Sprintf("%.2f (%.0f vs %.0f rows/s)", ratio, d.RowsPerSec, u.RowsPerSec), ratio >= 0.9)
		}
	}
	if l := r.Latency; l != nil {
		add(fmt.Sprintf("latency at %.0f rows/s, p50", l.TargetRate), "<= 10 ms", fmt.Sprintf("%.1f ms", l.P50MS), l.P50MS <= 10 && l.Delivered == l.Rows)
		add(fmt.Sprintf("latency at %.0f rows/s, p99", l.TargetRate), "<= 50 ms", fmt.Sprintf("%.1f ms", l.P99MS), l.P99MS <= 50 && l.Delivered == l.Rows)
	}
	if c := r.RateCap; c != nil {
		n429 := c.Status["429"]
		lo := c.RateLimit * 0.975
		add(fmt.Sprintf("rate cap %.0f/s", c.RateLimit), fmt.Sprintf("%.0f-%.0f msg/s, 0 429s", lo, c.RateLimit),
			fmt.Sprintf("%.1f msg/s steady (%.1f from start), %d 429s", c.SteadyPerSec, c.RowsPerSec, n429),
			c.SteadyPerSec >= lo && c.SteadyPerSec <= c.RateLimit*1.001 && n429 == 0)
	}
	var peak float64
	var peakOf string
	for _, d := range r.Drains {
		if d.RelayPeakRSSMiB > peak {
			peak, peakOf = d.RelayPeakRSSMiB, d.Scenario
		}
	}
	if peakOf != "" {
		add("peak RSS during drain", "<= 64 MiB", fmt.Sprintf("%.1f MiB (%s)", peak, peakOf), peak <= 64)
	}
	add("bench run time", "< 300 s", fmt.Sprintf("%.0f s", r.TotalSeconds), r.TotalSeconds < 300)
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f3(v float64) string { return fmt.Sprintf("%.3f", v) }

func optF3(v *float64) string {
	if v == nil {
		return "-"
	}
	return f3(*v)
}

func (r *report) printTable(out io.Writer) {
	m := r.Machine
	fmt.Fprintf(out, "\nrelay bench: %d CPUs (%s), %s, %s; PostgreSQL %s (fsync %s, synchronous_commit %s); load average at start %s\n",
		m.CPUs, m.CPUModel, m.MemTotal, m.GoVersion, m.PostgresVersion, m.PostgresFsync, m.PostgresSyncCommt, m.LoadAvg)
	s := r.Settings
	fmt.Fprintf(out, "relay and River reference: concurrency (MaxWorkers) %d, queue FetchCooldown %s, FetchPollInterval %s; relay log level %s",
		s.Concurrency, s.FetchCooldown, s.FetchPollInterval, s.RelayLogLevel)
	if len(s.RelayEnv) > 0 {
		fmt.Fprintf(out, ", env %s", strings.Join(s.RelayEnv, " "))
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out)

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trows\tsvix ms\tordering\tseconds\trows/s\tvs River\tpeak RSS MiB\tCPU s/1k: relay\tpostgres\tbench\tCPU busy\t")
	row := func(d *DrainResult) {
		ratio, rss, relayCPU := "-", "-", "-"
		if d.VsRiver > 0 {
			ratio = fmt.Sprintf("%.2f", d.VsRiver)
		}
		if d.RelayPeakRSSMiB > 0 {
			rss, relayCPU = f1(d.RelayPeakRSSMiB), f3(d.RelayCPUPer1k)
		}
		ordering := d.Ordering
		if ordering == "" {
			ordering = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.0f%%\t\n", d.Scenario, d.Rows, d.SvixLatencyMS, ordering,
			d.Seconds, d.RowsPerSec, ratio, rss, relayCPU, optF3(d.PostgresCPUPer1k), f3(d.BenchCPUPer1k), d.CPUBusy*100)
	}
	if r.River != nil {
		row(r.River)
	}
	for i := range r.Drains {
		row(&r.Drains[i])
	}
	if r.RateCap != nil {
		row(r.RateCap)
	}
	tw.Flush()

	if l := r.Latency; l != nil {
		fmt.Fprintf(out, "\nlatency: %d rows at %.0f rows/s (%.1f achieved) from %d connections, ordering %s: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, max %.1f ms, mean %.1f ms; %d of %d delivered; relay peak RSS %.1f MiB, CPU %.3f s/1k rows\n",
			l.Rows, l.TargetRate, l.AchievedRate, l.Conns, l.Ordering, l.P50MS, l.P95MS, l.P99MS, l.MaxMS, l.MeanMS, l.Delivered, l.Rows, l.RelayPeakRSSMiB, l.RelayCPUPer1k)
	}
	if c := r.RateCap; c != nil {
		fmt.Fprintf(out, "rate cap: %.0f msg/s cap, %d rows: %.1f msg/s between the first and last message, %.1f msg/s from relay start; svix answers %v\n",
			c.RateLimit, c.Rows, c.SteadyPerSec, c.RowsPerSec, c.Status)
	}
	for _, d := range r.Drains {
		if d.RelayWarnings+d.RelayErrors > 0 {
			fmt.Fprintf(out, "%s: relay logged %d warnings and %d errors\n", d.Scenario, d.RelayWarnings, d.RelayErrors)
		}
	}

	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
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

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
