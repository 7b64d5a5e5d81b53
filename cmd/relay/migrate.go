package main

import (
	"context"
	"fmt"
	"os"

	"github.com/mediaplatform/relay/schema"
)

// MigrateCmd applies or lists migrations.
type MigrateCmd struct {
	Up     MigrateUpCmd     `cmd:"" default:"1" help:"Apply pending migrations (the default)."`
	Status MigrateStatusCmd `cmd:"" help:"List migrations and whether each is applied."`
}

// MigrateUpCmd applies pending migrations.
type MigrateUpCmd struct{}

// Run applies pending migrations and prints each one applied.
func (MigrateUpCmd) Run(ctx context.Context, g *Globals) error {
	pool, err := g.pool(ctx, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := schema.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(os.Stdout, "nothing to apply: the schema is up to date")
		return nil
	}
	for _, m := range applied {
		fmt.Fprintf(os.Stdout, "applied %-6s %3d %s (%s)\n", m.Line, m.Version, m.Name, m.Duration.Round(100_000))
	}
	return nil
}

// MigrateStatusCmd lists migrations.
type MigrateStatusCmd struct{}

// Run prints every migration with its state.
func (MigrateStatusCmd) Run(ctx context.Context, g *Globals) error {
	pool, err := g.pool(ctx, 0)
	if err != nil {
		return err
	}
	defer pool.Close()
	status, err := schema.Status(ctx, pool)
	if err != nil {
		return err
	}
	pending := 0
	for _, m := range status {
		fmt.Fprintln(os.Stdout, m.String())
		if !m.Applied {
			pending++
		}
	}
	fmt.Fprintf(os.Stdout, "%d applied, %d pending\n", len(status)-pending, pending)
	return nil
}
