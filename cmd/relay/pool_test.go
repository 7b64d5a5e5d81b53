package main

import (
	"context"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/mediaplatform/relay/internal/pgtest"
)

func TestPoolApplicationName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ url, want string }{
		{"postgres://u@127.0.0.1:1/db", "relay"},
		{"postgres://u@127.0.0.1:1/db?application_name=relay-eu-1", "relay-eu-1"},
	} {
		g := Globals{DatabaseURL: tt.url}
		pool, err := g.pool(context.Background(), 4) // connects lazily: nothing listens on port 1
		if err != nil {
			t.Fatal(err)
		}
		got := pool.Config().ConnConfig.RuntimeParams["application_name"]
		pool.Close()
		if got != tt.want {
			t.Errorf("%s: application_name %q, want %q", tt.url, got, tt.want)
		}
	}
}

// TestServicePoolPlansOnce: relay run's and relay serve's sessions,
// connected directly, plan each prepared statement once (generic plans);
// a plan_cache_mode in DATABASE_URL is kept.
func TestServicePoolPlansOnce(t *testing.T) {
	t.Parallel()
	s := pgtest.NewSchema(t)
	for _, tt := range []struct{ query, want string }{
		{"", "force_generic_plan"},
		{"&plan_cache_mode=auto", "auto"},
	} {
		g := Globals{DatabaseURL: s.URL + tt.query}
		pool, err := g.servicePool(context.Background(), 2, false, "RELAY_POLL_ONLY", zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = pool.QueryRow(context.Background(), "SHOW plan_cache_mode").Scan(&got)
		pool.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("DATABASE_URL ...%s: plan_cache_mode %q, want %q", tt.query, got, tt.want)
		}
	}
}
