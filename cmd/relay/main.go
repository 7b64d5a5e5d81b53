// Command relay is the relay's one binary: `relay run` turns committed
// outbox rows into Svix messages, `relay serve` serves the public HTTP API
// (the endpoint API and the live stream), and the rest are operators'
// commands (migrate, status, replay, prune, api-key, live-token, svix
// sync, demo). It only wires packages together; see `relay --help` and
// the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

// run parses args, runs the command and returns the exit code: 0 on
// success, 2 for bad usage or settings, 1 for any other failure.
func run(ctx context.Context, args []string) int {
	cli, kctx, err := parse(ctx, args)
	if err != nil {
		var exit exitCode
		if errors.As(err, &exit) {
			return int(exit)
		}
		fmt.Fprintf(os.Stderr, "relay: %v\n", err)
		return 2
	}
	if err := kctx.Run(&cli.Globals); err != nil {
		var usage *usageError
		if errors.As(err, &usage) {
			fmt.Fprintf(os.Stderr, "relay: %v\n", err)
			return 2
		}
		var exit exitCode
		if errors.As(err, &exit) {
			return int(exit)
		}
		fmt.Fprintf(os.Stderr, "relay: %v\n", err)
		return 1
	}
	return 0
}
