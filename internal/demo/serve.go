package demo

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
)

// ServeConfig configures ServeSvix. Zero values take the documented
// defaults.
type ServeConfig struct {
	// SvixAddr is where the dev Svix server listens. Default
	// "127.0.0.1:8071".
	SvixAddr string
	// ReceiverAddr is where the receiver listens. Default "127.0.0.1:0".
	ReceiverAddr string
	// Out receives the instructions and the table. Default os.Stdout.
	Out io.Writer
	// Logger receives the dev server's logs. Default: no logs.
	Logger *zap.Logger
}

// ServeSvix runs the dev Svix server and the verifying receiver until ctx
// ends, printing how to point `relay run` at them and every delivery.
func ServeSvix(ctx context.Context, cfg ServeConfig) error {
	cfg.SvixAddr = cmp.Or(cfg.SvixAddr, "127.0.0.1:8071")
	cfg.ReceiverAddr = cmp.Or(cfg.ReceiverAddr, "127.0.0.1:0")
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	dev, err := startDevSvix(ctx, devSvixConfig{svixAddr: cfg.SvixAddr, receiverAddr: cfg.ReceiverAddr, log: cfg.Logger})
	if err != nil {
		return err
	}
	defer dev.close()

	out := cfg.Out
	fmt.Fprintf(out, "relay demo --svix-only: a dev Svix server and a verifying receiver (no database, no relay).\n")
	fmt.Fprintf(out, "  dev Svix  %s (internal/svixfake in dev mode): signs each message, delivers it, retries failures\n", dev.URL())
	fmt.Fprintf(out, "  receiver  %s: svix.NewWebhook(secret).Verify on every delivery, deduplicated on svix-id\n", dev.recv.URL("{"+strings.Join(Apps, ",")+"}"))
	fmt.Fprintf(out, "\nIn another terminal, with DATABASE_URL set, run the relay against it:\n")
	fmt.Fprintf(out, "  export SVIX_SERVER_URL=%s SVIX_AUTH_TOKEN=%s\n  relay migrate && relay run\n", dev.URL(), Token)
	fmt.Fprintf(out, "then commit outbox rows for app %s, e.g.\n  %s\n\n", strings.Join(Apps, " or "), psqlInsert(`"$DATABASE_URL"`, ""))

	w := newWatcher(dev, printer{out}, nil, nil)
	w.print.header()
	for {
		select {
		case d := <-dev.recv.C():
			w.handle(d)
		case m := <-dev.unrouted:
			w.unrouted(m)
		case <-ctx.Done():
			return nil
		}
	}
}
