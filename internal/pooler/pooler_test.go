package pooler_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/pooler"
	"github.com/mediaplatform/relay/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyTestMain(m) }

func TestProbe(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	probe := func(t *testing.T, url string) pooler.Report {
		t.Helper()
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		rep, err := pooler.Probe(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	t.Run("Direct", func(t *testing.T) {
		t.Parallel()
		if rep := probe(t, db.URL); rep.Pooler || rep.Shared {
			t.Errorf("direct connection: %+v, want no pooler", rep)
		}
	})
	t.Run("Transaction", func(t *testing.T) {
		t.Parallel()
		pgb := pgtest.StartPgBouncer(t, pgtest.PgBouncerConfig{PoolMode: "transaction", PoolSize: 2})
		if rep := probe(t, pgb.URL(db.Name)); !rep.Pooler || !rep.Shared {
			t.Errorf("PgBouncer in transaction mode: %+v, want a pooler sharing server connections", rep)
		}
	})
	t.Run("Session", func(t *testing.T) {
		t.Parallel()
		pgb := pgtest.StartPgBouncer(t, pgtest.PgBouncerConfig{PoolMode: "session", PoolSize: 2})
		if rep := probe(t, pgb.URL(db.Name)); !rep.Pooler || rep.Shared {
			t.Errorf("PgBouncer in session mode: %+v, want a pooler not sharing server connections", rep)
		}
	})
}

func TestSameSearchPath(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		want, got string
		same      bool
	}{
		{"relay", "relay", true},
		{"relay,public", "relay, public", true},
		{`"$user", public`, `"$user",public`, true},
		{"relay", `"$user", public`, false},
		{"t_1", "t_2", false},
	} {
		if got := pooler.SameSearchPath(tt.want, tt.got); got != tt.same {
			t.Errorf("SameSearchPath(%q, %q) = %v, want %v", tt.want, tt.got, got, tt.same)
		}
	}
}
