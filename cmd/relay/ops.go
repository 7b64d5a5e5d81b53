package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/server"
)

// validateOps checks the run settings for retention and River UI.
func (c *RunCmd) validateOps() error {
	switch {
	case (c.RiverUIUser == "") != (c.RiverUIPassword == ""):
		return usagef("RELAY_RIVERUI_USER and RELAY_RIVERUI_PASSWORD (--riverui-user, --riverui-password) must be set together: River UI is served only behind basic auth")
	case c.RiverUIPassword != "" && len(c.RiverUIPassword) < 12:
		return usagef("RELAY_RIVERUI_PASSWORD (--riverui-password) must be at least 12 characters (River UI can cancel, delete and retry jobs), got %d", len(c.RiverUIPassword))
	case c.RiverUIUser != "" && c.HTTPAddr == "":
		return usagef("RELAY_RIVERUI_USER needs RELAY_HTTP_ADDR (--http-addr): River UI is served by the HTTP server")
	case time.Duration(c.Retention) != 0 && time.Duration(c.Retention) < time.Minute:
		return usagef("RELAY_RETENTION (--retention) must be at least 1m (or 0 to keep every delivered row), got %s", c.Retention)
	case c.PruneInterval < time.Second:
		return usagef("RELAY_PRUNE_INTERVAL (--prune-interval) must be at least 1s, got %s", c.PruneInterval)
	case c.PruneBatch < 1 || c.PruneBatch > 100000:
		return usagef("RELAY_PRUNE_BATCH (--prune-batch) must be 1 to 100000, got %d", c.PruneBatch)
	}
	return nil
}

// withOps completes the HTTP server's config: relay_ready in the metrics,
// and River UI when its credentials are set (its background services stop
// with ctx).
func (c *RunCmd) withOps(ctx context.Context, cfg server.Config, relay *dispatch.Relay, reg prometheus.Registerer, log *zap.Logger) (server.Config, error) {
	if err := reg.Register(server.ReadyGauge(relay.Ready)); err != nil {
		return cfg, fmt.Errorf("register relay_ready: %w", err)
	}
	if c.RiverUIUser == "" || c.RiverUIPassword == "" {
		return cfg, nil
	}
	ui, err := server.RiverUI(ctx, relay.River(), log)
	if err != nil {
		return cfg, err
	}
	cfg.Admin, cfg.AdminPrefix = ui, server.RiverUIPrefix
	cfg.AdminUser, cfg.AdminPassword = c.RiverUIUser, c.RiverUIPassword
	log.Info("river ui enabled behind basic auth", zap.String("path", server.RiverUIPrefix+"/"))
	return cfg, nil
}

// secrets are the settings never printed: help shows only whether each is
// set in the environment.
var secrets = []string{"DATABASE_URL", "SVIX_AUTH_TOKEN", "RELAY_RIVERUI_PASSWORD"}

func secretStates(names ...string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		state := "unset"
		if os.Getenv(n) != "" {
			state = "set"
		}
		parts[i] = n + " " + state
	}
	return "Secrets, never printed, in this environment: " + strings.Join(parts, ", ") + "."
}

// Help is shown by relay --help.
func (CLI) Help() string {
	return secretStates(secrets...) + " The table at the end lists every environment variable with its default; each command's --help lists its flags."
}

// Help is shown by relay run --help.
func (c *RunCmd) Help() string {
	return "Every setting is a flag and an environment variable (shown beside it, with its default). " + secretStates(secrets...) +
		" River UI (/riverui/) is served only when RELAY_RIVERUI_USER and RELAY_RIVERUI_PASSWORD are both set."
}
