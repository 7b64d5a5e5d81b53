package main

import (
	"testing"
	"time"
)

func TestMoment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Time // zero: relative, ago before now
		ago  time.Duration
		bad  bool
	}{
		{in: "2026-05-01T12:00:00Z", want: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)},
		{in: "2026-05-01T14:00:00+02:00", want: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)},
		{in: "2026-05-01", want: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)},
		{in: "90m", ago: 90 * time.Minute},
		{in: "36h", ago: 36 * time.Hour},
		{in: "7d", ago: 7 * 24 * time.Hour},
		{in: " 2h ", ago: 2 * time.Hour},
		{in: "yesterday", bad: true},
		{in: "-2h", bad: true},
		{in: "-1d", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			var m moment
			before := time.Now()
			err := m.UnmarshalText([]byte(tt.in))
			after := time.Now()
			switch {
			case tt.bad:
				if err == nil {
					t.Errorf("%q accepted as %s", tt.in, m.Time)
				}
			case err != nil:
				t.Fatal(err)
			case !tt.want.IsZero():
				if !m.Equal(tt.want) {
					t.Errorf("%q = %s, want %s", tt.in, m.Time, tt.want)
				}
			default:
				if m.Before(before.Add(-tt.ago)) || m.After(after.Add(-tt.ago)) {
					t.Errorf("%q = %s, want %s before the parse (%s)", tt.in, m.Time, tt.ago, before)
				}
			}
		})
	}
}

func TestAge(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "168h": 168 * time.Hour, "0": 0, "90m": 90 * time.Minute} {
		var a age
		if err := a.UnmarshalText([]byte(in)); err != nil || time.Duration(a) != want {
			t.Errorf("age %q = %s, %v; want %s", in, time.Duration(a), err, want)
		}
	}
	var a age
	if err := a.UnmarshalText([]byte("soon")); err == nil {
		t.Error(`age "soon" accepted`)
	}
}
