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
//     any other pooler it is warned;
//   - connected directly, the sessions plan prepared statements once
//     (plan_cache_mode force_generic_plan, unless DATABASE_URL sets
//     plan_cache_mode): see genericPlans.
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
	if !rep.Pooler {
		genericPlans(cfg.ConnConfig)
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

// genericPlans makes the sessions of cfg plan each prepared statement once
// (plan_cache_mode force_generic_plan), unless cfg sets plan_cache_mode.
//
// pgx prepares every statement on each connection, and with the default
// plan_cache_mode PostgreSQL plans a statement on the partitioned outbox
// afresh at each execution (its generic plan, over every partition, looks
// costlier than a plan pruned for the values at hand): measured on PostgreSQL
// 15 with the outbox's 10 partitions, a lookup by id took 0.31 ms with
// the default, 0.09 ms with the generic plan, 0.73 ms planned every time;
// at 300 rows/s the relay's backends used 24% less CPU with generic
// plans. The relay's queries do not need plans fitted to their values:
// they are lookups by id, commit_seq ranges with a LIMIT read through the
// index (package nosort) and probes of the key index, and their generic
// plans prune partitions when they start (partition_at bounds are
// parameters).
//
// Only for direct connections: behind a pooler the relay uses unnamed
// statements (nothing is cached) and a pooler may refuse the startup
// parameter.
func genericPlans(cfg *pgx.ConnConfig) {
	if _, set := cfg.RuntimeParams["plan_cache_mode"]; !set {
		cfg.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
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
