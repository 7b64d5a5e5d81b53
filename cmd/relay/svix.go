package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/catalog"
)

// SvixCmd groups Svix utilities.
type SvixCmd struct {
	Sync SvixSyncCmd `cmd:"" help:"Register the outbox's event types in Svix, with descriptions and JSON Schemas of their payloads (idempotent)."`
}

// SvixSyncCmd registers the event catalog in Svix.
type SvixSyncCmd struct {
	SvixAuthToken string        `name:"svix-auth-token" env:"SVIX_AUTH_TOKEN" placeholder:"TOKEN" help:"Svix API token (required unless --dry-run; read it from the environment, it is never printed)."`
	SvixServerURL string        `name:"svix-server-url" env:"SVIX_SERVER_URL" placeholder:"URL" help:"Svix API base URL for self-hosted Svix; default: Svix's hosted API for the token's region."`
	SvixTimeout   time.Duration `name:"svix-timeout" env:"RELAY_SVIX_TIMEOUT" default:"15s" help:"Timeout of one Svix request."`
	DryRun        bool          `name:"dry-run" help:"Print the event types and schemas that would be registered (JSON); call nothing in Svix."`
}

// Help is shown by relay svix sync --help.
func (c *SvixSyncCmd) Help() string {
	return `The event types come from the database's catalog (table outbox_event_type, the list the outbox validates against), so this needs DATABASE_URL as well as the Svix settings; a new type (a migration) is registered by running it again. Types Svix already has are left as they are (409 event_type_exists is fine). Customers can then subscribe to them in Svix's portal.`
}

// Validate checks the settings (exit code 2).
func (c *SvixSyncCmd) Validate() error {
	switch {
	case c.SvixAuthToken == "" && !c.DryRun:
		return usagef("SVIX_AUTH_TOKEN (--svix-auth-token) is required: the Svix API token")
	case c.SvixTimeout <= 0:
		return usagef("RELAY_SVIX_TIMEOUT (--svix-timeout) must be positive, got %s", c.SvixTimeout)
	}
	return nil
}

// Run registers every type and prints one line per type.
func (c *SvixSyncCmd) Run(ctx context.Context, g *Globals) error {
	var sender *dispatch.SvixSender
	if !c.DryRun {
		var err error
		// Built like the relay's own client: the library's retries off, a
		// timeout per request.
		sender, err = dispatch.NewSvixSender(dispatch.SvixConfig{Token: c.SvixAuthToken, ServerURL: c.SvixServerURL, Timeout: c.SvixTimeout, MaxConns: 2})
		if err != nil {
			return usagef("SVIX_SERVER_URL (--svix-server-url): %v", err)
		}
	}
	pool, err := g.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	types, err := catalog.Load(ctx, pool)
	if err != nil {
		return err
	}
	if len(types) == 0 {
		return fmt.Errorf("the event catalog (outbox_event_type) is empty: run relay migrate first")
	}

	if c.DryRun {
		ins := make([]any, len(types))
		for i, t := range types {
			ins[i] = t.In()
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ins)
	}

	created, exists := 0, 0
	err = catalog.Sync(ctx, sender.Client(), types, func(t catalog.EventType, o catalog.Outcome) {
		if o == catalog.Created {
			created++
			fmt.Fprintf(os.Stdout, "created  %s\n", t.Name)
		} else {
			exists++
			fmt.Fprintf(os.Stdout, "exists   %s (left as it is)\n", t.Name)
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "%d event types: %d created, %d already registered\n", len(types), created, exists)
	return nil
}
