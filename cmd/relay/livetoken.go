package main

import (
	"fmt"
	"os"
	"time"

	"github.com/mediaplatform/relay/live"
	"github.com/mediaplatform/relay/outbox"
)

// LiveTokenCmd mints a live stream token, as a product's backend does with
// live.Mint.
type LiveTokenCmd struct {
	AppID      string        `name:"app-id" required:"" placeholder:"APP" help:"Account (outbox app_id) whose live stream the token opens."`
	TTL        time.Duration `name:"ttl" default:"15m" help:"How long the token is valid (at most 24h)."`
	LiveSecret string        `name:"live-secret" env:"RELAY_LIVE_SECRET" placeholder:"SECRET" help:"Secret that signs live tokens, the one relay serve uses (at least 32 bytes; never printed)."`
}

// Validate checks the settings (exit code 2).
func (c *LiveTokenCmd) Validate() error {
	switch {
	case len(c.LiveSecret) < live.MinSecretBytes:
		return usagef("RELAY_LIVE_SECRET (--live-secret) must be at least %d bytes, got %d bytes", live.MinSecretBytes, len(c.LiveSecret))
	case c.TTL <= 0 || c.TTL > live.MaxTokenTTL:
		return usagef("--ttl must be positive and at most %s, got %s", live.MaxTokenTTL, c.TTL)
	}
	if err := outbox.ValidateAppID(c.AppID); err != nil {
		return usagef("--app-id: %v", err)
	}
	return nil
}

// Run prints the token as the last line of stdout; when it expires goes to
// stderr.
func (c *LiveTokenCmd) Run() error {
	tok, err := live.Mint([]byte(c.LiveSecret), c.AppID, c.TTL)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "live token for app_id %s, valid until %s\n", c.AppID, time.Now().Add(c.TTL).UTC().Format(time.RFC3339))
	fmt.Fprintln(os.Stdout, tok)
	return nil
}
