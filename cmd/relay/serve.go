package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/mediaplatform/relay/endpoints"
	"github.com/mediaplatform/relay/internal/httpapi"
	"github.com/mediaplatform/relay/live"
)

// ServeCmd serves the public HTTP API.
type ServeCmd struct {
	Addr            string        `name:"addr" env:"RELAY_SERVE_ADDR" default:"127.0.0.1:8090" help:"Address of the public API (/v1/webhook-endpoints); 0.0.0.0:8090 in a container, behind TLS."`
	SvixAuthToken   string        `name:"svix-auth-token" env:"SVIX_AUTH_TOKEN" placeholder:"TOKEN" help:"Svix API token (required; read it from the environment, it is never printed)."`
	SvixServerURL   string        `name:"svix-server-url" env:"SVIX_SERVER_URL" placeholder:"URL" help:"Svix API base URL for self-hosted Svix or a local dev server; default: Svix's hosted API for the token's region."`
	AllowInsecure   bool          `name:"allow-insecure-endpoints" env:"RELAY_ALLOW_INSECURE_ENDPOINTS" help:"Accept http:// endpoint URLs, localhost and private, loopback and link-local addresses. For local development only: on a server it lets customers point webhooks into your network."`
	RateLimit       float64       `name:"api-rate-limit" env:"RELAY_API_RATE_LIMIT" default:"20" help:"Requests per second allowed per API key (a token bucket); above it, 429 with Retry-After."`
	RateBurst       int           `name:"api-rate-burst" env:"RELAY_API_RATE_BURST" default:"40" help:"Requests an API key may send at once."`
	SvixTimeout     time.Duration `name:"svix-timeout" env:"RELAY_SVIX_TIMEOUT" default:"10s" help:"Timeout of one Svix request; past it the API answers 504."`
	ShutdownTimeout time.Duration `name:"shutdown-timeout" env:"RELAY_SHUTDOWN_TIMEOUT" default:"8s" help:"On SIGTERM, how long requests in flight may finish."`
	DBMaxConns      int32         `name:"db-max-conns" env:"RELAY_DB_MAX_CONNS" default:"10" help:"Database connections in the pool."`

	Live liveFlags `embed:""`
}

// Server timeouts: a request's headers and body must arrive within
// serveReadTimeout (bodies are at most 1 MiB), its answer within
// serveWriteTimeout (above the API's own 25 s budget for Svix), and an idle
// keep-alive connection is closed after serveIdleTimeout.
const (
	serveReadHeaderTimeout = 5 * time.Second
	serveReadTimeout       = 15 * time.Second
	serveWriteTimeout      = 35 * time.Second
	serveIdleTimeout       = 90 * time.Second
	pruneIdempotencyEvery  = 10 * time.Minute
)

// Help is shown by relay serve --help.
func (c *ServeCmd) Help() string {
	return `Serves the endpoint management API (see the README and GET /v1/openapi.yaml) for customers holding an API key (relay api-key create). It is the public HTTP surface, apart from relay run's ops port; put it behind TLS. Needs DATABASE_URL (migrated) and the Svix settings.`
}

// Validate checks settings before anything starts (exit code 2).
func (c *ServeCmd) Validate() error {
	if err := c.Live.check(); err != nil {
		return err
	}
	switch {
	case c.SvixAuthToken == "":
		return usagef("SVIX_AUTH_TOKEN (--svix-auth-token) is required: the Svix API token")
	case c.Addr == "":
		return usagef("RELAY_SERVE_ADDR (--addr) is required, e.g. 127.0.0.1:8090")
	case c.RateLimit < 0:
		return usagef("RELAY_API_RATE_LIMIT (--api-rate-limit) must be 0 (no limit) or more requests/s, got %g", c.RateLimit)
	case c.RateBurst < 1:
		return usagef("RELAY_API_RATE_BURST (--api-rate-burst) must be at least 1, got %d", c.RateBurst)
	case c.SvixTimeout <= 0 || c.SvixTimeout > endpoints.DefaultRequestTimeout:
		return usagef("RELAY_SVIX_TIMEOUT (--svix-timeout) must be positive and at most %s, got %s", endpoints.DefaultRequestTimeout, c.SvixTimeout)
	case c.ShutdownTimeout <= 0:
		return usagef("RELAY_SHUTDOWN_TIMEOUT (--shutdown-timeout) must be positive, got %s", c.ShutdownTimeout)
	case c.DBMaxConns < 2:
		return usagef("RELAY_DB_MAX_CONNS (--db-max-conns) must be at least 2, got %d", c.DBMaxConns)
	}
	return nil
}

// Run serves until the context ends (SIGTERM or SIGINT), then lets
// requests in flight finish within --shutdown-timeout.
func (c *ServeCmd) Run(ctx context.Context, g *Globals) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr
	pool, err := g.servicePool(ctx, c.DBMaxConns, c.Live.LiveSecret != "" && !c.Live.LivePollOnly, "RELAY_LIVE_POLL_ONLY", log)
	if err != nil {
		return err
	}
	defer pool.Close()

	rateLimit := c.RateLimit
	if rateLimit == 0 {
		rateLimit = -1 // endpoints: negative is no limit
	}
	api, err := endpoints.New(endpoints.Config{
		DB: pool, SvixToken: c.SvixAuthToken, SvixServerURL: c.SvixServerURL, Logger: log,
		AllowInsecureURLs: c.AllowInsecure, RateLimit: rateLimit, RateBurst: c.RateBurst, SvixTimeout: c.SvixTimeout,
	})
	if err != nil {
		return usagef("%v", err)
	}
	if c.AllowInsecure {
		log.Warn("RELAY_ALLOW_INSECURE_ENDPOINTS is on: endpoints may use http and private addresses; never on a public server")
	}
	lv, stopLive, err := c.Live.start(ctx, pool, log)
	if err != nil {
		return err
	}
	defer stopLive()
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return usagef("RELAY_SERVE_ADDR (--addr): %v", err)
	}
	// Requests run on a context of their own, cancelled shortly before the
	// shutdown timeout: a request still waiting on Svix then answers 503
	// with Retry-After instead of being cut off without an answer.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		Handler:           publicMux(api, lv, log),
		ReadHeaderTimeout: serveReadHeaderTimeout,
		ReadTimeout:       serveReadTimeout,
		WriteTimeout:      serveWriteTimeout,
		IdleTimeout:       serveIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
	if lv != nil {
		srv.RegisterOnShutdown(lv.Close) // streams never go idle: end them
	}
	log.Info("serving the public API", zap.String("addr", ln.Addr().String()))

	go pruneIdempotency(ctx, api, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down the public API")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.ShutdownTimeout)
	defer cancel()
	answer := time.AfterFunc(c.ShutdownTimeout-min(time.Second, c.ShutdownTimeout/4), cancelRequests)
	defer answer.Stop()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		log.Warn("requests still in flight were cut off at shutdown", zap.Error(err))
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// publicMux is the public surface: the endpoint API, its OpenAPI document,
// /healthz (200 while the process serves: a liveness probe, for `relay
// healthcheck --http-addr=... --path=/healthz`), the live stream (when
// RELAY_LIVE_SECRET is set) and the envelope's 404 for anything else.
func publicMux(api *endpoints.Handler, lv *live.Handler, log *zap.Logger) http.Handler {
	mux := http.NewServeMux()
	mountLive(mux, lv)
	mux.Handle(endpoints.CollectionPath, api)
	mux.Handle(endpoints.ItemPrefix, api)
	mux.Handle("GET /v1/openapi.yaml", httpapi.Routed(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(endpoints.OpenAPI())
	})))
	mux.Handle("GET /healthz", httpapi.Routed(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})))
	mux.Handle("/", httpapi.Routed(httpapi.NotFoundHandler()))
	return httpapi.Chain(mux, httpapi.RequestID, httpapi.AccessLog(log.Named("api")), httpapi.Recover(log))
}

// pruneIdempotency deletes expired Idempotency-Keys now and every
// pruneIdempotencyEvery until ctx ends.
func pruneIdempotency(ctx context.Context, api *endpoints.Handler, log *zap.Logger) {
	t := time.NewTicker(pruneIdempotencyEvery)
	defer t.Stop()
	for {
		n, err := api.PruneIdempotencyKeys(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("prune idempotency keys", zap.Error(err))
		case n > 0:
			log.Info("pruned expired idempotency keys", zap.Int64("deleted", n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
