package dispatch_test

import (
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/dispatch"
)

// TestConfigRefusesNegativeDurations checks that New names a negative
// duration instead of handing it to a ticker, which would panic.
func TestConfigRefusesNegativeDurations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		field string
		set   func(*dispatch.Config)
	}{
		{"ShutdownTimeout", func(c *dispatch.Config) { c.ShutdownTimeout = -time.Second }},
		{"MaxAge", func(c *dispatch.Config) { c.MaxAge = -time.Hour }},
		{"IdempotencyWindow", func(c *dispatch.Config) { c.IdempotencyWindow = -time.Hour }},
		{"BackoffMin", func(c *dispatch.Config) { c.BackoffMin = -time.Second }},
		{"BackoffMax", func(c *dispatch.Config) { c.BackoffMax = -time.Second }},
		{"PollInterval", func(c *dispatch.Config) { c.PollInterval = -time.Second }},
		{"RescanInterval", func(c *dispatch.Config) { c.RescanInterval = -time.Second }},
		{"SequencerInterval", func(c *dispatch.Config) { c.SequencerInterval = -time.Millisecond }},
		{"StaleAfter", func(c *dispatch.Config) { c.StaleAfter = -time.Minute }},
		{"SampleInterval", func(c *dispatch.Config) { c.SampleInterval = -time.Second }},
		{"JobRetention", func(c *dispatch.Config) { c.JobRetention = -time.Hour }},
		{"PruneInterval", func(c *dispatch.Config) { c.PruneInterval = -time.Minute }},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			t.Parallel()
			var cfg dispatch.Config
			tt.set(&cfg)
			_, err := dispatch.New(nil, nil, cfg)
			if err == nil || !strings.Contains(err.Error(), tt.field+" must be positive") {
				t.Fatalf("New with a negative %s: err = %v, want it named", tt.field, err)
			}
		})
	}
}

// TestConfigRetention checks Retention's rule: 0 keeps every delivered row,
// anything else is at least 1m (the soak test compresses days into
// minutes).
func TestConfigRetention(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{-time.Hour, -1, time.Second, 59 * time.Second} {
		_, err := dispatch.New(nil, nil, dispatch.Config{Retention: d})
		if err == nil || !strings.Contains(err.Error(), "Retention must be 0 (keep every delivered row) or at least 1m, got "+d.String()) {
			t.Errorf("New with Retention %s: err = %v, want the rule named", d, err)
		}
	}
}

// TestConfigWriters checks Writers' range: 0 takes the default (4), and
// a negative or absurd count is refused by name.
func TestConfigWriters(t *testing.T) {
	t.Parallel()
	if got := (dispatch.Config{}).WithDefaults().Writers; got != 4 {
		t.Errorf("default Writers = %d, want 4", got)
	}
	for _, n := range []int{-1, 1001} {
		_, err := dispatch.New(nil, nil, dispatch.Config{Writers: n})
		if err == nil || !strings.Contains(err.Error(), "writers must be 1 to 1000") {
			t.Errorf("New with Writers %d: err = %v, want the rule named", n, err)
		}
	}
}
