package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// moment is a point in time on the command line: an RFC 3339 timestamp
// (2026-05-01T12:00:00Z), a date (2026-05-01, midnight UTC), or an age
// before now (90m, 36h, 7d).
type moment struct{ time.Time }

// UnmarshalText implements encoding.TextUnmarshaler for kong.
func (m *moment) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		m.Time = t
		return nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		m.Time = t
		return nil
	}
	if age, err := parseAge(s); err == nil {
		m.Time = time.Now().Add(-age)
		return nil
	}
	return fmt.Errorf("%q is not a time: give an RFC 3339 time (2026-05-01T12:00:00Z), a date (2026-05-01) or an age (90m, 36h, 7d)", s)
}

// parseAge reads a Go duration, or whole days ("7d").
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return 0, errors.New("bad days")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("bad duration")
	}
	return d, nil
}

// age is a duration flag that also takes whole days ("7d").
type age time.Duration

// UnmarshalText implements encoding.TextUnmarshaler for kong.
func (a *age) UnmarshalText(b []byte) error {
	d, err := parseAge(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%q is not a duration: give e.g. 168h or 7d (0 turns it off)", string(b))
	}
	*a = age(d)
	return nil
}

func (a age) String() string { return time.Duration(a).String() }
