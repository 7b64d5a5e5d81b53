package dispatch

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestPartSpan(t *testing.T) {
	t.Parallel()
	at := func(s string) pgtype.Timestamptz {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return pgtype.Timestamptz{Time: tm, Valid: true}
	}
	minusInf := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	tests := []struct {
		name   string
		rows   []claimed
		args   string
		lo, hi string // "" for open
	}{
		{"one row", []claimed{{1, at("2026-05-02T10:00:00.000001Z")}}, `{"ids":[1],"part_from_us":1777716000000001,"part_to_us":1777716000000001}`,
			"2026-05-02T10:00:00.000001Z", "2026-05-02T10:00:00.000001Z"},
		{"rows across days, newest first", []claimed{{2, at("2026-05-03T00:00:00Z")}, {1, at("2026-05-01T23:59:59.5Z")}},
			`{"ids":[2,1],"part_from_us":1777679999500000,"part_to_us":1777766400000000}`, "2026-05-01T23:59:59.5Z", "2026-05-03T00:00:00Z"},
		{"a row at -infinity opens the span", []claimed{{1, at("2026-05-02T10:00:00Z")}, {2, minusInf}}, `{"ids":[1,2]}`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw, err := json.Marshal(batchArgs(tt.rows))
			if err != nil {
				t.Fatal(err)
			}
			if string(raw) != tt.args {
				t.Errorf("args %s, want %s", raw, tt.args)
			}
			var a BatchArgs
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Fatal(err)
			}
			lo, hi := a.span().bounds()
			check := func(name string, got pgtype.Timestamptz, want string, inf pgtype.InfinityModifier) {
				if want == "" {
					if got.InfinityModifier != inf {
						t.Errorf("%s = %v, want %v", name, got, inf)
					}
					return
				}
				if w := at(want); got.InfinityModifier != pgtype.Finite || !got.Time.Equal(w.Time) {
					t.Errorf("%s = %v, want %s", name, got.Time, want)
				}
			}
			check("lower bound", lo, tt.lo, pgtype.NegativeInfinity)
			check("upper bound", hi, tt.hi, pgtype.Infinity)
		})
	}
	t.Run("a job made before spans reads every partition", func(t *testing.T) {
		t.Parallel()
		var a BatchArgs
		if err := json.Unmarshal([]byte(`{"ids":[1,2]}`), &a); err != nil {
			t.Fatal(err)
		}
		lo, hi := a.span().bounds()
		if lo.InfinityModifier != pgtype.NegativeInfinity || hi.InfinityModifier != pgtype.Infinity {
			t.Errorf("bounds %v..%v, want -infinity..infinity", lo, hi)
		}
	})
}
