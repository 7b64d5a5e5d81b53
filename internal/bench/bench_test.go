package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/outbox"
)

func TestPct(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"one", ms(7), 0.99, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 0.50, 50 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p100", ms(1, 2, 3), 1, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := pct(tc.sorted, tc.q); got != tc.want {
				t.Errorf("pct(%v, %g) = %s, want %s", tc.sorted, tc.q, got, tc.want)
			}
		})
	}
}

// The rows the bench writes pass the outbox's validation (checked in Go;
// the database gives the same verdict) and have distinct assets.
func TestEventIsValid(t *testing.T) {
	t.Parallel()
	assets := map[string]bool{}
	for i := range 200 {
		app, typ, data := event("run1", i)
		if err := outbox.Validate(outbox.Event{AppID: app, Type: outbox.EventType(typ), Data: json.RawMessage(data)}); err != nil {
			t.Fatalf("row %d (%s %s %s): %v", i, app, typ, data, err)
		}
		var d struct {
			AssetID string `json:"asset_id"`
		}
		if err := json.Unmarshal([]byte(data), &d); err != nil {
			t.Fatal(err)
		}
		if assets[d.AssetID] {
			t.Fatalf("row %d repeats asset %s", i, d.AssetID)
		}
		assets[d.AssetID] = true
	}
}

// Every scenario runs end to end at a tiny size against the relay binary,
// real PostgreSQL and the fake Svix: every row reaches Svix once, in
// per-asset order where ordering is on, and each figure is filled in. It
// checks behaviour, never timings.
func TestScenariosTiny(t *testing.T) {
	t.Parallel()
	base := pgtest.BaseURL(t)
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	var out bytes.Buffer
	args := []string{
		"-database-url", base, "-json", jsonPath, "-scenarios", strings.Join(allScenarios, ","),
		"-rows", "120", "-large-rows", "240", "-next-row-keys", "4", "-next-row-rows", "24",
		"-latency-rate", "50", "-latency-duration", "1s", "-latency-conns", "2",
		"-producers", "3", "-producer-duration", "300ms", "-producer-assets", "3", "-producer-rows", "2",
		"-rate-cap", "200", "-rate-cap-rows", "40", "-concurrency", "20", "-drain-cut", "0",
		"-relay-log-level", "warn",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if err := run(ctx, args, &out); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("bench JSON: %v", err)
	}

	if rep.River == nil || rep.River.Rows != 120 || rep.River.RowsPerSec <= 0 {
		t.Errorf("river-noop: %+v", rep.River)
	}
	if sv := rep.Svix; sv == nil || sv.Rows != 120 || sv.Messages != 120 || !sv.Complete || sv.RowsPerSec <= 0 {
		t.Errorf("svix-noop: %+v", rep.Svix)
	}
	wantRows := map[string]int{"next-row": 24, "realistic-1m": 240}
	for _, name := range allScenarios {
		switch name {
		case "river-noop", "svix-noop", "latency", "producers", "rate-cap", "sequencer":
			continue
		}
		d := rep.drain(name)
		if d == nil {
			t.Errorf("%s: not in the report", name)
			continue
		}
		rows := cmp.Or(wantRows[name], 120)
		if d.Rows != rows || d.Delivered != rows || d.Messages != rows || !d.Complete || d.RecordedSeconds <= 0 {
			t.Errorf("%s: rows %d, delivered %d, messages %d, complete %v, recorded after %.2f s; want all %d", name, d.Rows, d.Delivered, d.Messages, d.Complete, d.RecordedSeconds, rows)
		}
		if d.ToSvix == nil || d.ToSvix.Count != rows {
			t.Errorf("%s: time to svix %+v, want %d rows", name, d.ToSvix, rows)
		}
		c := d.Cost
		if c == nil || c.WALBytesPerRow <= 0 || c.StmtsPerRow <= 0 || c.OutboxUpdates <= 0 || c.StmtsSource == "" {
			t.Errorf("%s: PostgreSQL cost %+v, want WAL, statements and outbox updates", name, c)
		}
		if d.RelayPeakRSSMiB <= 0 || d.RelayPeakHeapMiB <= 0 {
			t.Errorf("%s: relay peak RSS %.1f MiB, heap %.1f MiB", name, d.RelayPeakRSSMiB, d.RelayPeakHeapMiB)
		}
		if d.Layout == layoutRealistic || d.Layout == layoutFewKeys {
			if d.MultiRowKeys == 0 || d.NextRow == nil || d.NextRow.Count+d.NextRow.OutOfOrder != rows-d.Keys {
				t.Errorf("%s: %d keys with several rows, next-row %+v; want a pair per row after its key's first (%d)", name, d.MultiRowKeys, d.NextRow, rows-d.Keys)
			}
			if d.Ordering == "asset" && d.NextRow != nil && d.NextRow.OutOfOrder != 0 {
				t.Errorf("%s: %d rows reached svix before their predecessor with ordering on", name, d.NextRow.OutOfOrder)
			}
		}
		if strings.HasPrefix(name, "realistic") && !strings.HasPrefix(d.Stats, "stale") {
			t.Errorf("%s: statistics %q, want stale", name, d.Stats)
		}
	}
	if l := rep.Latency; l == nil || l.Rows != 50 || l.Delivered != l.Rows || l.P99MS <= 0 {
		t.Errorf("latency: %+v", l)
	}
	if c := rep.RateCap; c == nil || c.Delivered != 40 || c.SteadyPerSec <= 0 {
		t.Errorf("rate-cap: %+v", c)
	}
	if q := rep.Sequencer; q == nil || q.Rows != 44 || len(q.Sizes) != 2 || q.Sizes[0].RowsPerStep != 1 || q.Sizes[1].Steps != 2 || q.Sizes[1].RowsPerSec <= 0 {
		t.Errorf("sequencer: %+v; want 24 steps of 1 row and 2 of 10", q)
	}
	p := rep.Producers
	if p == nil || len(p.Modes) != len(producerModes) {
		t.Fatalf("producers: %+v", p)
	}
	for _, m := range p.Modes {
		if m.Txs == 0 || m.Rows != m.Txs*2 {
			t.Errorf("producers %s: %d transactions, %d rows; want some, 2 rows each", m.Mode, m.Txs, m.Rows)
		}
	}
	if p.Delivered != p.Committed {
		t.Errorf("producers: %d of %d committed rows reached svix", p.Delivered, p.Committed)
	}
	text := out.String()
	for _, want := range append([]string{"machine: nproc", "summary", "WAL B/row", "target"}, allScenarios...) {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

// -replicas runs each drain with several relay processes: every row still
// reaches Svix once, in per-asset order, and the report gives each
// replica's peak RSS and the summed CPU. Behaviour only, never timings.
func TestReplicasTiny(t *testing.T) {
	t.Parallel()
	base := pgtest.BaseURL(t)
	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	var out bytes.Buffer
	args := []string{
		"-database-url", base, "-json", jsonPath, "-scenario", "realistic-0ms", "-scenario", "next-row", "-replicas", "1,2",
		"-rows", "150", "-next-row-keys", "4", "-next-row-rows", "24", "-concurrency", "20", "-drain-cut", "0",
		"-relay-log-level", "warn", "-relay-env", "RELAY_DB_MAX_CONNS=4",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, args, &out); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("bench JSON: %v", err)
	}
	var names []string
	for _, d := range rep.Drains {
		names = append(names, d.Scenario)
	}
	if want := []string{"realistic-0ms", "realistic-0ms-2relays", "next-row", "next-row-2relays"}; !slices.Equal(names, want) {
		t.Fatalf("drains %v, want %v", names, want)
	}
	for _, d := range rep.Drains {
		replicas := 1
		if strings.HasSuffix(d.Scenario, "-2relays") {
			replicas = 2
		}
		if d.Replicas != replicas || len(d.RelayPeakRSSPerReplicaMiB) != replicas {
			t.Errorf("%s: %d replicas, peak RSS per replica %v; want %d", d.Scenario, d.Replicas, d.RelayPeakRSSPerReplicaMiB, replicas)
		}
		for _, p := range d.RelayPeakRSSPerReplicaMiB {
			if p <= 0 || p > d.RelayPeakRSSMiB {
				t.Errorf("%s: a replica's peak RSS %.1f MiB, largest %.1f MiB", d.Scenario, p, d.RelayPeakRSSMiB)
			}
		}
		if !d.Complete || d.Delivered != d.Rows || d.Messages != d.Rows || d.RecordedSeconds <= 0 {
			t.Errorf("%s: complete %v, %d of %d rows delivered, %d messages, recorded after %.2f s", d.Scenario, d.Complete, d.Delivered, d.Rows, d.Messages, d.RecordedSeconds)
		}
		if d.NextRow == nil || d.NextRow.OutOfOrder != 0 || d.NextRow.Count != d.Rows-d.Keys {
			t.Errorf("%s: next-row %+v; want every pair in order (%d)", d.Scenario, d.NextRow, d.Rows-d.Keys)
		}
		if d.WallSeconds <= 0 || d.MachineBusy == nil || d.Cost == nil {
			t.Errorf("%s: CPU span %.2f s, machine busy %v, cost %+v; want all", d.Scenario, d.WallSeconds, d.MachineBusy, d.Cost)
		}
	}
	text := out.String()
	for _, want := range []string{"realistic-0ms-2relays", "2 relay processes", "processes summed", "machine busy", "PostgreSQL backends"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

// Two readings of pg_stat_statements give each statement's share and the
// numbering step's.
func TestStatementCosts(t *testing.T) {
	t.Parallel()
	before := map[int64]stmtStat{
		1: {query: "SELECT outbox_sequence($1)", calls: 10, execMS: 5, rows: 10},
		2: {query: "UPDATE outbox SET ...", calls: 1, execMS: 1, rows: 1},
	}
	after := map[int64]stmtStat{
		1: {query: "SELECT outbox_sequence($1)", calls: 30, execMS: 25, rows: 30},
		2: {query: "UPDATE outbox SET ...", calls: 11, execMS: 101, rows: 1001},
		3: {query: "SELECT 1", calls: 5, execMS: 0.5, rows: 5},
	}
	top, seq := statementCosts(before, after, 1000, 2)
	if len(top) != 2 || top[0].Calls != 10 || top[0].TotalMS != 100 || top[0].Rows != 1000 || top[1].Calls != 20 {
		t.Errorf("top statements %+v; want the UPDATE (10 calls, 100 ms) then the step (20 calls)", top)
	}
	if seq == nil || seq.Steps != 20 || seq.TotalMS != 20 || seq.MeanMS != 1 || seq.RowsStep != 50 || seq.USPerRow != 20 || seq.CapRowsPerSec != 50_000 {
		t.Errorf("sequencer %+v; want 20 steps of 1 ms, 50 rows each, 20 µs per row, 50,000 rows/s", seq)
	}
	if top, seq := statementCosts(before, nil, 1000, 2); top != nil || seq != nil {
		t.Errorf("without pg_stat_statements: %+v, %+v; want nothing", top, seq)
	}
}

// The sequencer scenario gives each step size about a fifth of -rows, in
// at most 200 steps, and leaves out sizes that would get fewer than two.
func TestSequencerPlan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rows         int
		sizes, steps []int
		total        int
	}{
		{50_000, []int{1, 10, 100, 1000, 5000}, []int{200, 200, 100, 10, 2}, 200 + 2000 + 10_000 + 10_000 + 10_000},
		{120, []int{1, 10}, []int{24, 2}, 44},
		{5, nil, nil, 0},
	} {
		sizes, steps, total := sequencerPlan(tc.rows)
		if !slices.Equal(sizes, tc.sizes) || !slices.Equal(steps, tc.steps) || total != tc.total {
			t.Errorf("sequencerPlan(%d) = %v, %v, %d; want %v, %v, %d", tc.rows, sizes, steps, total, tc.sizes, tc.steps, tc.total)
		}
	}
}

// The realistic layout spreads rows over 8 apps × rows/50 assets with 1 to
// 20 rows each, deterministically; the others keep to their shapes.
func TestPlanBacklog(t *testing.T) {
	t.Parallel()
	t.Run("realistic", func(t *testing.T) {
		t.Parallel()
		p := planBacklog(layoutRealistic, 50_000, 0)
		if p.nkeys != 8000 || len(p.keys) != 50_000 {
			t.Fatalf("%d keys, %d rows; want 8000, 50000", p.nkeys, len(p.keys))
		}
		counts := make([]int, p.nkeys)
		for _, k := range p.keys {
			counts[k]++
		}
		for k, c := range counts {
			if c < 1 || c > 20 {
				t.Fatalf("key %d has %d rows, want 1 to 20", k, c)
			}
		}
		if again := planBacklog(layoutRealistic, 50_000, 0); !slices.Equal(again.keys, p.keys) {
			t.Error("two plans of the same size differ")
		}
		if p.multiRowKeys() < 4000 {
			t.Errorf("%d keys with several rows, want most of 8000", p.multiRowKeys())
		}
	})
	for _, tc := range []struct {
		layout           string
		rows, hint, keys int
	}{
		{layoutSingle, 100, 0, 100},
		{layoutDistinct, 100, 0, 100},
		{layoutFewKeys, 100, 7, 7},
		{layoutRealistic, 5, 0, 1},
	} {
		t.Run(tc.layout, func(t *testing.T) {
			t.Parallel()
			p := planBacklog(tc.layout, tc.rows, tc.hint)
			if p.nkeys != tc.keys || len(p.keys) != tc.rows {
				t.Errorf("%d keys, %d rows; want %d, %d", p.nkeys, len(p.keys), tc.keys, tc.rows)
			}
		})
	}
}

// Planned rows pass the outbox's validation and name their row.
func TestPlannedEventIsValid(t *testing.T) {
	t.Parallel()
	p := planBacklog(layoutRealistic, 500, 0)
	nth := make([]int, p.nkeys)
	for i, k := range p.keys {
		app, typ, data := plannedEvent("run1", p, i, nth[k])
		nth[k]++
		if err := outbox.Validate(outbox.Event{AppID: app, Type: outbox.EventType(typ), Data: json.RawMessage(data)}); err != nil {
			t.Fatalf("row %d (%s %s %s): %v", i, app, typ, data, err)
		}
		d, err := parseDelivery(app, []byte(`{"type":"`+typ+`","data":`+data+`}`))
		if err != nil || d.row != i {
			t.Fatalf("row %d parses as %+v, %v", i, d, err)
		}
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{"default", nil, defaultScenarios, ""},
		{"large adds the 1M-row drain", []string{"--large"}, append(slices.Clone(defaultScenarios), "realistic-1m"), ""},
		{"one scenario", []string{"--scenario", "realistic-0ms"}, []string{"realistic-0ms"}, ""},
		{"scenario twice", []string{"--scenario", "next-row", "--scenario", "producers", "--large"}, []string{"next-row", "producers"}, ""},
		{"unknown scenario", []string{"--scenario", "nope"}, nil, `unknown scenario "nope"`},
		{"stray argument", []string{"realistic-0ms"}, nil, `unexpected argument "realistic-0ms"`},
		{"negative cut", []string{"-drain-cut", "-1s"}, nil, "-drain-cut must not be negative"},
		{"replicas", []string{"-replicas", "1,2,3", "--scenario", "realistic-0ms"}, []string{"realistic-0ms"}, ""},
		{"no replicas", []string{"-replicas", "0"}, nil, `-replicas: "0" is not a count`},
		{"too many replicas", []string{"-replicas", "1,9"}, nil, `-replicas: "9" is not a count`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags(append([]string{"-database-url", "postgres://x"}, tc.args...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.scenarios, tc.want) {
				t.Errorf("scenarios %v, want %v", o.scenarios, tc.want)
			}
		})
	}
}
