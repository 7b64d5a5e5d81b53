package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"riverqueue.com/riverui"
)

// RiverUIPrefix is where River UI is mounted.
const RiverUIPrefix = "/riverui"

// RiverUI builds River UI (jobs, queues; it can cancel, delete and retry
// jobs) on client, for mounting at RiverUIPrefix as Config.Admin, which puts
// it behind basic auth. Its background services run until ctx ends.
func RiverUI(ctx context.Context, client *river.Client[pgx.Tx], log *zap.Logger) (http.Handler, error) {
	if log == nil {
		log = zap.NewNop()
	}
	h, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints: riverui.NewEndpoints(client, nil),
		Logger:    slog.New(zapslog.NewHandler(log.Core(), zapslog.WithName("riverui"))),
		Prefix:    RiverUIPrefix,
	})
	if err != nil {
		return nil, fmt.Errorf("create river ui: %w", err)
	}
	if err := h.Start(ctx); err != nil {
		return nil, fmt.Errorf("start river ui: %w", err)
	}
	return h, nil
}
