package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/server"
)

// RunCmd runs the relay.
type RunCmd struct {
	SvixAuthToken string `name:"svix-auth-token" env:"SVIX_AUTH_TOKEN" placeholder:"TOKEN" help:"Svix API token (required; read it from the environment, it is never printed)."`
	SvixServerURL string `name:"svix-server-url" env:"SVIX_SERVER_URL" placeholder:"URL" help:"Svix API base URL for self-hosted Svix or a local dev server; default: Svix's hosted API for the token's region. For local development, 'relay demo --svix-only' runs a Svix-compatible dev server that delivers signed webhooks to a verifying receiver, and prints the SVIX_SERVER_URL and SVIX_AUTH_TOKEN to use."`

	Concurrency     int           `name:"concurrency" env:"RELAY_CONCURRENCY" default:"400" help:"Svix sends in flight; the most a relay sends is about this / Svix latency."`
	BatchSize       int           `name:"batch-size" env:"RELAY_BATCH_SIZE" default:"100" help:"Most rows per delivery job: sent concurrently, outcomes recorded in one transaction."`
	RateLimit       float64       `name:"rate-limit" env:"RELAY_RATE_LIMIT" default:"0" help:"Cap on sends to Svix, messages/s; 0 for none (Svix plans allow 200 or 800)."`
	SvixTimeout     time.Duration `name:"svix-timeout" env:"RELAY_SVIX_TIMEOUT" default:"15s" help:"Timeout of one Svix request."`
	JobTimeout      time.Duration `name:"job-timeout" env:"RELAY_JOB_TIMEOUT" default:"30s" help:"Timeout of one attempt of a delivery job: rate waits, Svix calls and recording the outcomes (the last third, at most 10s, is kept for recording)."`
	RescueAfter     time.Duration `name:"rescue-after" env:"RELAY_RESCUE_AFTER" default:"45s" help:"A job running this long is taken back by River's leader (after a relay was killed); must exceed --job-timeout by at least 1s."`
	ShutdownTimeout time.Duration `name:"shutdown-timeout" env:"RELAY_SHUTDOWN_TIMEOUT" default:"25s" help:"On SIGTERM, how long sends in flight may finish before they are cut off."`
	MaxAge          time.Duration `name:"max-age" env:"RELAY_MAX_AGE" default:"72h" help:"Rows failing transiently are retried until this long after they were written or last replayed, then marked failed."`
	BackoffMin      time.Duration `name:"backoff-min" env:"RELAY_BACKOFF_MIN" default:"1s" help:"First retry delay of a row (capped exponential with jitter)."`
	BackoffMax      time.Duration `name:"backoff-max" env:"RELAY_BACKOFF_MAX" default:"60s" help:"Longest retry delay; also bounds recovery after a Svix outage."`
	PollInterval    time.Duration `name:"poll-interval" env:"RELAY_POLL_INTERVAL" default:"1s" help:"How often to look for rows without a notification."`
	PollOnly        bool          `name:"poll-only" env:"RELAY_POLL_ONLY" help:"Do not LISTEN (for PgBouncer transaction pooling); poll every --poll-interval."`
	Ordering        string        `name:"ordering" env:"RELAY_ORDERING" default:"asset" help:"Rows that reach Svix in commit order: asset (per app_id and data.asset_id), entity (per app_id and data.entity_id; an entity must stay in one asset, as rows are numbered per asset) or off."`
	BlockOnFailure  bool          `name:"block-on-failure" env:"RELAY_BLOCK_ON_FAILURE" help:"A failed row holds back the later rows of its ordering key until it is replayed (default: they go on without it)."`
	ClaimBatch      int           `name:"claim-batch" env:"RELAY_CLAIM_BATCH" default:"500" help:"Most rows the feeder looks at per claim transaction."`
	DBMaxConns      int32         `name:"db-max-conns" env:"RELAY_DB_MAX_CONNS" default:"20" help:"Database connections in the pool."`
	DBWriters       int           `name:"db-writers" env:"RELAY_DB_WRITERS" default:"4" help:"Most delivery jobs reading or recording their rows at once (at most --db-max-conns); about the database's cores: more only adds contention."`
	HTTPAddr        string        `name:"http-addr" env:"RELAY_HTTP_ADDR" default:"127.0.0.1:8080" help:"Address of /healthz, /readyz and /metrics; empty to disable."`
	RiverUIUser     string        `name:"riverui-user" env:"RELAY_RIVERUI_USER" placeholder:"USER" help:"Serve River UI at /riverui/ behind basic auth with this user and --riverui-password; off unless both are set."`
	RiverUIPassword string        `name:"riverui-password" env:"RELAY_RIVERUI_PASSWORD" placeholder:"PASSWORD" help:"River UI's basic auth password, at least 12 characters (it can cancel, delete and retry jobs); read it from the environment, it is never printed."`
	Retention       age           `name:"retention" env:"RELAY_RETENTION" default:"7d" help:"Delivered rows older than this are deleted, in batches, by a periodic job the River leader schedules; failed rows are kept. 0 keeps every delivered row (no retention job runs), as Retention 0 does in dispatch.Config. River's own job rows are separate: completed jobs are deleted after --job-retention, cancelled and discarded ones after this retention (7d when it is 0)."`
	JobRetention    time.Duration `name:"job-retention" env:"RELAY_JOB_RETENTION" default:"1h" help:"How long River keeps completed delivery jobs (River UI shows them meanwhile; each batch job's row holds its rows' ids). Shorter keeps River's job table small at high rates."`
	PruneInterval   time.Duration `name:"prune-interval" env:"RELAY_PRUNE_INTERVAL" default:"10m" help:"How often delivered rows past --retention are deleted."`
	PruneBatch      int           `name:"prune-batch" env:"RELAY_PRUNE_BATCH" default:"1000" help:"Most rows deleted per transaction when pruning."`
	CPUProfile      string        `name:"cpu-profile" env:"RELAY_CPU_PROFILE" hidden:"" placeholder:"FILE" help:"Write a CPU profile of the whole run to FILE (for make bench)."`
}

// Validate checks settings before anything starts (exit code 2).
func (c *RunCmd) Validate() error {
	switch {
	case c.Ordering != "asset" && c.Ordering != "entity" && c.Ordering != "off":
		return usagef("RELAY_ORDERING (--ordering) must be asset, entity or off, got %q", c.Ordering)
	case c.SvixAuthToken == "":
		return usagef("SVIX_AUTH_TOKEN (--svix-auth-token) is required: the Svix API token")
	case c.Concurrency < 1 || c.Concurrency > 10000:
		return usagef("RELAY_CONCURRENCY (--concurrency) must be 1 to 10000, got %d", c.Concurrency)
	case c.RateLimit < 0:
		return usagef("RELAY_RATE_LIMIT (--rate-limit) must be 0 or more messages/s, got %g", c.RateLimit)
	case c.SvixTimeout <= 0:
		return usagef("RELAY_SVIX_TIMEOUT (--svix-timeout) must be positive, got %s", c.SvixTimeout)
	case c.JobTimeout <= c.SvixTimeout:
		return usagef("RELAY_JOB_TIMEOUT (--job-timeout, %s) must exceed RELAY_SVIX_TIMEOUT (%s)", c.JobTimeout, c.SvixTimeout)
	case c.RescueAfter < c.JobTimeout+time.Second:
		return usagef("RELAY_RESCUE_AFTER (--rescue-after, %s) must exceed RELAY_JOB_TIMEOUT (%s) by at least 1s", c.RescueAfter, c.JobTimeout)
	case c.BatchSize < 1 || c.BatchSize > 1000:
		return usagef("RELAY_BATCH_SIZE (--batch-size) must be 1 to 1000, got %d", c.BatchSize)
	case c.ShutdownTimeout <= 0:
		return usagef("RELAY_SHUTDOWN_TIMEOUT (--shutdown-timeout) must be positive, got %s", c.ShutdownTimeout)
	case c.MaxAge <= 0:
		return usagef("RELAY_MAX_AGE (--max-age) must be positive, got %s", c.MaxAge)
	case c.JobRetention < time.Minute:
		return usagef("RELAY_JOB_RETENTION (--job-retention) must be at least 1m, got %s", c.JobRetention)
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return usagef("RELAY_BACKOFF_MIN (%s) must be positive and at most RELAY_BACKOFF_MAX (%s)", c.BackoffMin, c.BackoffMax)
	case c.PollInterval <= 0:
		return usagef("RELAY_POLL_INTERVAL (--poll-interval) must be positive, got %s", c.PollInterval)
	case c.ClaimBatch < 1 || c.ClaimBatch > 10000:
		return usagef("RELAY_CLAIM_BATCH (--claim-batch) must be 1 to 10000, got %d", c.ClaimBatch)
	case c.DBMaxConns < 4:
		return usagef("RELAY_DB_MAX_CONNS (--db-max-conns) must be at least 4, got %d", c.DBMaxConns)
	case c.DBWriters < 1 || c.DBWriters > int(c.DBMaxConns):
		return usagef("RELAY_DB_WRITERS (--db-writers) must be 1 to RELAY_DB_MAX_CONNS (%d), got %d", c.DBMaxConns, c.DBWriters)
	}
	return c.validateOps()
}

// Run delivers until the context ends (SIGTERM or SIGINT).
func (c *RunCmd) Run(ctx context.Context, g *Globals) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr

	if c.CPUProfile != "" {
		stop, err := startCPUProfile(c.CPUProfile)
		if err != nil {
			return usagef("RELAY_CPU_PROFILE (--cpu-profile): %v", err)
		}
		defer stop()
	}

	pool, err := g.servicePool(ctx, c.DBMaxConns, !c.PollOnly, "RELAY_POLL_ONLY", log)
	if err != nil {
		return err
	}
	defer pool.Close()

	sender, err := dispatch.NewSvixSender(dispatch.SvixConfig{
		Token: c.SvixAuthToken, ServerURL: c.SvixServerURL, Timeout: c.SvixTimeout, MaxConns: c.Concurrency,
	})
	if err != nil {
		return usagef("SVIX_SERVER_URL (--svix-server-url): %v", err)
	}

	reg := prometheus.NewRegistry()
	metricsReg := g.labelledRegisterer(reg) // every metric carries database="..."
	metricsReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	relay, err := dispatch.New(pool, sender, dispatch.Config{
		Concurrency:     c.Concurrency,
		BatchSize:       c.BatchSize,
		Writers:         c.DBWriters,
		RateLimit:       c.RateLimit,
		JobTimeout:      c.JobTimeout,
		RescueAfter:     c.RescueAfter,
		ShutdownTimeout: c.ShutdownTimeout,
		MaxAge:          c.MaxAge,
		BackoffMin:      c.BackoffMin,
		BackoffMax:      c.BackoffMax,
		PollInterval:    c.PollInterval,
		PollOnly:        c.PollOnly,
		ClaimBatch:      c.ClaimBatch,
		Ordering:        c.Ordering,
		BlockOnFailure:  c.BlockOnFailure,
		Retention:       time.Duration(c.Retention),
		PruneInterval:   c.PruneInterval,
		PruneBatch:      c.PruneBatch,
		JobRetention:    c.JobRetention,
		Logger:          log,
		Metrics:         dispatch.NewMetrics(metricsReg),
	})
	if err != nil {
		return usagef("%v", err)
	}

	if c.HTTPAddr != "" {
		srvCfg, err := c.withOps(ctx, server.Config{Addr: c.HTTPAddr, Ready: relay.Ready, Gatherer: reg, Logger: log}, relay, metricsReg, log)
		if err != nil {
			return err
		}
		srv, err := server.Start(srvCfg)
		if err != nil {
			return usagef("RELAY_HTTP_ADDR (--http-addr): %v", err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}()
	}

	if err := relay.Run(ctx); err != nil {
		log.Error("relay stopped with an error", zap.Error(err))
		return fmt.Errorf("run: %w", err)
	}
	return nil
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
