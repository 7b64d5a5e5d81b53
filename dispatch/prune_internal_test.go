package dispatch

import (
	"testing"
	"time"
)

// TestRetentionZeroKeepsDeliveredRows checks what Retention 0 (the default,
// and RELAY_RETENTION=0) means: no retention job, and River keeps its
// cancelled and discarded jobs 7 days; any other Retention schedules the
// job and is River's retention too.
func TestRetentionZeroKeepsDeliveredRows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		retention time.Duration
		jobs      int
		river     time.Duration
	}{
		{"zero keeps every delivered row", 0, 0, 7 * 24 * time.Hour},
		{"a day", 24 * time.Hour, 1, 24 * time.Hour},
		{"thirty days", 30 * 24 * time.Hour, 1, 30 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := Config{Retention: tt.retention}.WithDefaults()
			if err := cfg.validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			if cfg.Retention != tt.retention {
				t.Errorf("WithDefaults turned Retention %s into %s", tt.retention, cfg.Retention)
			}
			r := &Relay{cfg: cfg}
			if got := len(r.periodicJobs()); got != tt.jobs {
				t.Errorf("%d periodic jobs, want %d", got, tt.jobs)
			}
			if got := cfg.riverRetention(); got != tt.river {
				t.Errorf("River keeps cancelled and discarded jobs %s, want %s", got, tt.river)
			}
		})
	}
}
