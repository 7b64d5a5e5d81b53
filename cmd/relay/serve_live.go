package main

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/httpapi"
	"github.com/mediaplatform/relay/live"
)

// liveFlags are relay serve's settings for the live stream (GET /v1/live).
type liveFlags struct {
	LiveSecret         string        `name:"live-secret" env:"RELAY_LIVE_SECRET" placeholder:"SECRET" help:"Secret that signs live tokens (at least 32 bytes; read it from the environment, it is never printed). Unset: the live stream is off."`
	LiveHeartbeat      time.Duration `name:"live-heartbeat" env:"RELAY_LIVE_HEARTBEAT" default:"15s" help:"Longest silence on a live stream: a comment line keeps proxies from closing it."`
	LiveOrigins        []string      `name:"live-origins" env:"RELAY_LIVE_ORIGINS" sep:"," placeholder:"ORIGIN" help:"First-party origins (https://app.example.com) whose pages may use the live stream cross-origin, with credentials (CORS)."`
	LiveInsecureCookie bool          `name:"live-insecure-cookie" env:"RELAY_LIVE_INSECURE_COOKIE" help:"Send the live session cookie without Secure, for local development over plain http only."`
	LivePollOnly       bool          `name:"live-poll-only" env:"RELAY_LIVE_POLL_ONLY" help:"Find new rows by polling alone, without LISTEN (PgBouncer in transaction pooling mode)."`
	LivePollInterval   time.Duration `name:"live-poll-interval" env:"RELAY_LIVE_POLL_INTERVAL" help:"How often to look for new rows without a notification (default 1s, 250ms with --live-poll-only)."`
	LiveMaxStreams     int           `name:"live-max-streams-per-app" env:"RELAY_LIVE_MAX_STREAMS_PER_APP" default:"100" help:"Concurrent live streams one account may hold; above it, 429."`
	LiveReplayLimit    int           `name:"live-replay-limit" env:"RELAY_LIVE_REPLAY_LIMIT" default:"1000" help:"Most rows a reconnecting stream replays; a cursor further behind gets a reset event."`
	LiveBuffer         int           `name:"live-buffer" env:"RELAY_LIVE_BUFFER" default:"64" help:"Events a live stream may have queued; a stream further behind is cut off and resumes from its cursor."`
	LiveWriteTimeout   time.Duration `name:"live-write-timeout" env:"RELAY_LIVE_WRITE_TIMEOUT" default:"10s" help:"Deadline of each write to a live stream; a client that does not read within it is cut off (idle streams are not)."`
}

// check validates the live settings (exit code 2), never printing the
// secret.
func (f *liveFlags) check() error {
	switch {
	case f.LiveSecret != "" && len(f.LiveSecret) < live.MinSecretBytes:
		return usagef("RELAY_LIVE_SECRET (--live-secret) must be at least %d bytes, got %d bytes", live.MinSecretBytes, len(f.LiveSecret))
	case f.LiveHeartbeat <= 0:
		return usagef("RELAY_LIVE_HEARTBEAT (--live-heartbeat) must be positive, got %s", f.LiveHeartbeat)
	case f.LivePollInterval < 0:
		return usagef("RELAY_LIVE_POLL_INTERVAL (--live-poll-interval) must be positive, got %s", f.LivePollInterval)
	case f.LiveMaxStreams < 1:
		return usagef("RELAY_LIVE_MAX_STREAMS_PER_APP (--live-max-streams-per-app) must be at least 1, got %d", f.LiveMaxStreams)
	case f.LiveReplayLimit < 1:
		return usagef("RELAY_LIVE_REPLAY_LIMIT (--live-replay-limit) must be at least 1, got %d", f.LiveReplayLimit)
	case f.LiveBuffer < 1:
		return usagef("RELAY_LIVE_BUFFER (--live-buffer) must be at least 1, got %d", f.LiveBuffer)
	case f.LiveWriteTimeout <= 0:
		return usagef("RELAY_LIVE_WRITE_TIMEOUT (--live-write-timeout) must be positive, got %s", f.LiveWriteTimeout)
	}
	_, err := f.config(nil, nil)
	return err
}

func (f *liveFlags) config(pool *pgxpool.Pool, log *zap.Logger) (live.Config, error) {
	cfg := live.Config{
		DB: pool, Secret: []byte(f.LiveSecret), Logger: log,
		Heartbeat: f.LiveHeartbeat, WriteTimeout: f.LiveWriteTimeout, Buffer: f.LiveBuffer,
		MaxStreamsPerApp: f.LiveMaxStreams, ReplayLimit: f.LiveReplayLimit,
		PollInterval: f.LivePollInterval, PollOnly: f.LivePollOnly,
		AllowedOrigins: f.LiveOrigins, InsecureCookie: f.LiveInsecureCookie,
	}
	for _, o := range f.LiveOrigins {
		if err := live.ValidateOrigin(o); err != nil {
			return cfg, usagef("RELAY_LIVE_ORIGINS (--live-origins): origin %q must be scheme://host[:port], e.g. https://app.example.com", o)
		}
	}
	return cfg, nil
}

// start creates the live stream and runs its reader until ctx ends; stop
// waits for the reader. It returns a nil handler when no secret is set.
func (f *liveFlags) start(ctx context.Context, pool *pgxpool.Pool, log *zap.Logger) (h *live.Handler, stop func(), err error) {
	if f.LiveSecret == "" {
		log.Info("live stream off: RELAY_LIVE_SECRET is not set")
		return nil, func() {}, nil
	}
	cfg, err := f.config(pool, log)
	if err != nil {
		return nil, nil, err
	}
	h, err = live.New(cfg)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	if f.LiveInsecureCookie {
		log.Warn("RELAY_LIVE_INSECURE_COOKIE is on: the live session cookie is sent over plain http; never on a public server")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := h.Run(ctx); err != nil {
			log.Error("live stream reader stopped", zap.Error(err))
		}
	})
	return h, wg.Wait, nil
}

// mountLive serves the stream, its session endpoint and the reference
// page (GET /live) on mux.
func mountLive(mux *http.ServeMux, h *live.Handler) {
	if h == nil {
		return
	}
	mux.Handle(live.Path, h)
	mux.Handle(live.Path+"/", h)
	mux.Handle("GET /live", httpapi.Routed(live.Page(live.PageConfig{})))
}
