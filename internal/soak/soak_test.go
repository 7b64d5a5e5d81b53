package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
)

func TestLedger(t *testing.T) {
	t.Parallel()
	msg := func(app, data string) svixfake.Message {
		return svixfake.Message{AppUID: app, Payload: []byte(`{"type":"asset.ready","data":` + data + `}`)}
	}
	l := newLedger(4)
	l.onMessage(msg("a", `{"asset_id":"x","soak_row":0,"soak_nth":0,"soak_of":2}`))
	l.onMessage(msg("a", `{"asset_id":"y","soak_row":2,"soak_nth":1,"soak_of":2}`)) // y's first row has not arrived
	l.onMessage(msg("a", `{"asset_id":"x","soak_row":1,"soak_nth":1,"soak_of":2}`))
	l.onMessage(msg("a", `{"asset_id":"x","soak_row":1,"soak_nth":1,"soak_of":2}`)) // twice
	l.onMessage(msg("a", `{"asset_id":"z","soak_row":9,"soak_nth":0,"soak_of":1}`)) // no such row
	l.onMessage(msg("a", `{"asset_id":"z"}`))
	got := l.counts()
	want := ledgerCounts{messages: 6, delivered: 3, duplicates: 1, unknown: 2, outOfOrder: 1, missing: 1}
	if got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
	if len(l.next) != 0 {
		t.Errorf("assets still followed: %v, want none (x ended, y's last row arrived)", l.next)
	}
}

func TestParseLSN(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint64{"0/0": 0, "16/B374D848": 0x16_B374D848, "FFFFFFFF/FFFFFFFF": 1<<64 - 1} {
		if got, err := parseLSN(in); err != nil || got != want {
			t.Errorf("parseLSN(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12", "x/1", "1/2/3"} {
		if _, err := parseLSN(in); err == nil {
			t.Errorf("parseLSN(%q) succeeded, want an error", in)
		}
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"-database-url", "x"}, 30 * time.Second},                                      // 10M rows: 30 s
		{[]string{"-database-url", "x", "-rows", "200000"}, 5 * time.Second},                    // 100 s: at least 20 rows
		{[]string{"-database-url", "x", "-rows", "1000000", "-rate", "1000"}, 30 * time.Second}, // capped
		{[]string{"-database-url", "x", "-interval", "2s"}, 2 * time.Second},
	} {
		o, err := parseFlags(tc.args, io.Discard)
		if err != nil || o.interval != tc.want {
			t.Errorf("parseFlags(%q): interval %s, %v; want %s", tc.args, o.interval, err, tc.want)
		}
	}
	for _, args := range [][]string{
		{"-database-url", "x", "-rows", "0"},
		{"-database-url", "x", "-live-assets", "2", "-rows-per-tx", "4"},
		{"-database-url", "x", "extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) succeeded, want an error", args)
		}
	}
}

// A short soak end to end against the relay binary, real PostgreSQL and
// the fake Svix: every row reaches Svix once and in order, the table and
// the Markdown file are written. It checks behaviour, never timings.
func TestSoakTiny(t *testing.T) {
	t.Parallel()
	md := filepath.Join(t.TempDir(), "soak.md")
	o, err := parseFlags([]string{
		"-database-url", pgtest.BaseURL(t), "-rows", "900", "-rate", "600", "-producers", "3",
		"-interval", "100ms", "-markdown", md, "-drain-timeout", "2m",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, o, &out); err != nil {
		t.Fatalf("soak: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"fsync", "elapsed", "delivered rows/s", "OK   900 rows inserted, 900 messages at Svix: 900 rows once, 0 duplicates, 0 missing, 0 out of order"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	b, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "| elapsed |") || !strings.Contains(string(b), "OK   900 rows") {
		t.Errorf("markdown lacks the table or the verdict:\n%s", b)
	}
}

func TestCheckFails(t *testing.T) {
	t.Parallel()
	ok := result{o: options{rows: 10}, counts: ledgerCounts{messages: 10, delivered: 10}}
	ok.check()
	if len(ok.problems) != 0 || !strings.HasPrefix(ok.verdict(), "OK") {
		t.Fatalf("a clean run: problems %q, verdict %q", ok.problems, ok.verdict())
	}
	for name, r := range map[string]result{
		"duplicate":    {counts: ledgerCounts{messages: 11, delivered: 10, duplicates: 1}},
		"missing":      {counts: ledgerCounts{messages: 9, delivered: 9, missing: 1}},
		"out of order": {counts: ledgerCounts{messages: 10, delivered: 10, outOfOrder: 1}},
		"undelivered":  {counts: ledgerCounts{messages: 10, delivered: 10}, undelivered: 1},
		"failed":       {counts: ledgerCounts{messages: 10, delivered: 10}, failed: 1},
		"exit":         {counts: ledgerCounts{messages: 10, delivered: 10}, relayExit: errors.New("exit status 1")},
	} {
		r.o.rows = 10
		r.check()
		if len(r.problems) == 0 || !strings.HasPrefix(r.verdict(), "FAIL") {
			t.Errorf("%s: problems %q, verdict %q; want a failure", name, r.problems, r.verdict())
		}
	}
}

func TestMarkdownThinsLongTables(t *testing.T) {
	t.Parallel()
	r := result{o: options{rows: 10, rate: 1, tolerance: 0.25}, insertSecs: 1}
	for i := range 170 {
		phase := "insert"
		if i >= 160 {
			phase = "drain"
		}
		r.samples = append(r.samples, sample{at: time.Duration(i+1) * time.Second, phase: phase, inserted: int64(i)})
	}
	md := r.markdownText()
	rows := strings.Count(md, "| insert |") + strings.Count(md, "| drain |")
	if rows < 20 || rows > markdownRows+2 {
		t.Errorf("markdown holds %d of 170 rows, want about %d", rows, markdownRows)
	}
	for _, want := range []string{"| 2m40s | insert | 159 |", "| 2m50s | drain | 169 |", "Every 6th row of the 170 printed"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q (the last row of each phase, and what was left out):\n%s", want, md)
		}
	}
}
