package main

import (
	"context"
	"os"
	"time"

	"github.com/alecthomas/kong"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/demo"
	"github.com/mediaplatform/relay/internal/logging"
)

// DemoCmd runs the whole flow locally: `make demo`.
type DemoCmd struct {
	Follow       bool          `name:"follow" help:"After the summary, keep running and show the delivery of every row anyone commits to the demo's outbox (with psql, say) until Ctrl-C."`
	SvixOnly     bool          `name:"svix-only" help:"Run only the dev Svix server and the verifying receiver, until Ctrl-C, and print the SVIX_SERVER_URL and SVIX_AUTH_TOKEN with which 'relay run' in another terminal delivers to them. Needs no database."`
	Schema       string        `name:"schema" default:"relay_demo" help:"Schema of the demo's tables (outbox, River's, renders), created when absent; empty for the first schema of DATABASE_URL's search_path."`
	Timeout      time.Duration `name:"timeout" default:"30s" help:"How long every event may take to be delivered and verified; the demo exits 1 when one is not."`
	SvixAddr     string        `name:"svix-addr" placeholder:"HOST:PORT" help:"Address of the dev Svix server (default: a free loopback port; 127.0.0.1:8071 with --svix-only)."`
	ReceiverAddr string        `name:"receiver-addr" default:"127.0.0.1:0" placeholder:"HOST:PORT" help:"Address of the webhook receiver."`
	APIAddr      string        `name:"api-addr" default:"127.0.0.1:0" placeholder:"HOST:PORT" help:"Address of the endpoint management API (as relay serve) through which the demo creates the receiver's endpoints; with --follow it stays up for curl."`
}

// Validate checks settings before anything starts (exit code 2).
func (c *DemoCmd) Validate() error {
	switch {
	case c.Timeout <= 0:
		return usagef("--timeout must be positive, got %s", c.Timeout)
	case c.SvixOnly && c.Follow:
		return usagef("--follow and --svix-only do not combine: --svix-only always runs until Ctrl-C")
	}
	return nil
}

// Run runs the demo, or with --svix-only only its dev Svix server.
func (c *DemoCmd) Run(ctx context.Context, g *Globals, kctx *kong.Context) error {
	log, err := demoLogger(g, kctx)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // stderr

	if c.SvixOnly {
		return demo.ServeSvix(ctx, demo.ServeConfig{SvixAddr: c.SvixAddr, ReceiverAddr: c.ReceiverAddr, Out: os.Stdout, Logger: log})
	}
	if g.DatabaseURL == "" {
		return usagef("DATABASE_URL (--database-url) is required: a PostgreSQL URL such as postgres://user@localhost:5432/db (make demo provides one)")
	}
	_, err = demo.Run(ctx, demo.Config{
		DatabaseURL:  g.DatabaseURL,
		Schema:       c.Schema,
		Timeout:      c.Timeout,
		Follow:       c.Follow,
		SvixAddr:     c.SvixAddr,
		ReceiverAddr: c.ReceiverAddr,
		APIAddr:      c.APIAddr,
		Out:          os.Stdout,
		Logger:       log,
	})
	return err
}

// demoLogger keeps the demo's table readable: unless --log-level or
// --log-format (or their environment variables) are given, logs go to
// stderr at warn level in the console format.
func demoLogger(g *Globals, kctx *kong.Context) (*zap.Logger, error) {
	level, format := "warn", logging.FormatConsole
	if explicit(kctx, "log-level", "RELAY_LOG_LEVEL") {
		level = g.LogLevel
	}
	if explicit(kctx, "log-format", "RELAY_LOG_FORMAT") {
		format = g.LogFormat
	}
	log, err := logging.New(format, level)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return log, nil
}

// explicit reports whether a flag was given on the command line or through
// its environment variable, rather than left to its default.
func explicit(kctx *kong.Context, flag, env string) bool {
	if _, ok := os.LookupEnv(env); ok {
		return true
	}
	for _, p := range kctx.Path {
		if p.Flag != nil && p.Flag.Name == flag {
			return true
		}
	}
	return false
}
