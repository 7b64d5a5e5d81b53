package main

import (
	"encoding/json"
	"os"
	"testing"
	"time"

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

func TestReadProcUsage(t *testing.T) {
	t.Parallel()
	// Burn CPU until the kernel has counted some (it counts in ticks), so
	// the CPU figure is shown to move, not merely to be non-negative.
	deadline := time.Now().Add(10 * time.Second)
	var sink uint64
	for {
		u, err := readProcUsage(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if u.PeakRSSKiB <= 0 {
			t.Fatalf("usage of this process: %+v, want a peak RSS", u)
		}
		if u.CPU > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage of this process: %+v, want CPU time after 10 s of work (sink %d)", u, sink)
		}
		for i := range uint64(10_000_000) {
			sink += i * i
		}
	}
}
