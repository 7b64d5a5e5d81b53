package testkit

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	svix "github.com/svix/svix-webhooks/go"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// Env is what a test of the relay against its real dependencies starts
// from.
type Env struct {
	// Schema is the test's own schema, migrated; Pool connects to it.
	Schema pgtest.Schema
	Pool   *pgxpool.Pool
	// Svix is the fake Svix; Client a real Svix client for its default
	// token.
	Svix   *svixfake.Server
	Client *svix.Svix
	// Logger writes to Logs.
	Logger *zap.Logger
	Logs   *LogBuffer
}

// Start migrates a schema of the test's own (pgtest.Migrated), starts the
// fake Svix with cfg (StartSvix) and a logger on a LogBuffer (Logger);
// all of it ends with tb.
func Start(tb testing.TB, cfg svixfake.Config) *Env {
	tb.Helper()
	s, pool := pgtest.Migrated(tb)
	fake, client := StartSvix(tb, cfg)
	log, logs := Logger()
	return &Env{Schema: s, Pool: pool, Svix: fake, Client: client, Logger: log, Logs: logs}
}
