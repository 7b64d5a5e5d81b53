package main

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/pooler"
)

// probeTimeout bounds the look for a connection pooler at start.
const probeTimeout = 10 * time.Second

// servicePool opens the pool of a long-running command (relay run, relay
// serve) after looking for a connection pooler between it and PostgreSQL:
//
//   - a search_path asked for in DATABASE_URL that the session does not
//     have (a pooler dropped the startup parameter) is refused: the relay
//     would work in the wrong schema;
//   - behind a pooler, queries use pgx's exec mode (no named prepared
//     statements, which PgBouncer before 1.21 cannot carry from one
//     transaction to the next) unless DATABASE_URL names a
//     default_query_exec_mode itself;
//   - a command that would LISTEN (listenFlag not set) behind a pooler
//     seen sharing server connections is refused, naming listenFlag; behind
//     any other pooler it is warned.
//
// When the probe itself fails (the database is not up yet) the pool is
// opened unchanged, as without a pooler.
func (g *Globals) servicePool(ctx context.Context, maxConns int32, listens bool, listenFlag string, log *zap.Logger) (*pgxpool.Pool, error) {
	cfg, err := g.poolConfig(maxConns)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	rep, err := pooler.Probe(pctx, cfg.ConnConfig)
	cancel()
	if err != nil {
		log.Warn("could not look for a connection pooler in front of the database; going on without", zap.Error(err))
		return openPool(ctx, cfg)
	}
	if err := checkSearchPath(cfg.ConnConfig, rep); err != nil {
		return nil, err
	}
	if rep.Pooler {
		mode := "as DATABASE_URL sets it"
		if !setsExecMode(g.DatabaseURL) {
			cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
			mode = "exec (no prepared statements)"
		}
		log.Info("a connection pooler answers DATABASE_URL", zap.Bool("shares_server_connections", rep.Shared),
			zap.String("query_exec_mode", mode))
		if listens {
			if rep.Shared {
				return nil, usagef("DATABASE_URL goes through a connection pooler that shares server connections between clients (transaction pooling), where LISTEN does not work: set %s=true, or connect to PostgreSQL directly", listenFlag)
			}
			log.Warn("DATABASE_URL goes through a connection pooler: LISTEN works only in session pooling; with transaction pooling set " + listenFlag + "=true")
		}
	}
	return openPool(ctx, cfg)
}

// checkSearchPath refuses a session whose search_path is not the one
// DATABASE_URL asked for.
func checkSearchPath(cfg *pgx.ConnConfig, rep pooler.Report) error {
	want, ok := cfg.RuntimeParams["search_path"]
	if !ok || pooler.SameSearchPath(want, rep.SearchPath) {
		return nil
	}
	return usagef("DATABASE_URL asks for search_path %q but the session has %q: a connection pooler dropped the parameter (PgBouncer before 1.20 passes only a few on; ignore_startup_parameters drops the rest). Set it for the role instead (ALTER ROLE ... SET search_path = ...) and remove it from the URL", want, rep.SearchPath)
}

// setsExecMode reports whether the URL (or key/value string) names pgx's
// default_query_exec_mode.
func setsExecMode(databaseURL string) bool {
	return strings.Contains(databaseURL, "default_query_exec_mode")
}
