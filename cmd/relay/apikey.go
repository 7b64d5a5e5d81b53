package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/mediaplatform/relay/apikey"
	"github.com/mediaplatform/relay/outbox"
)

// APIKeyCmd manages the public API's keys.
type APIKeyCmd struct {
	Create APIKeyCreateCmd `cmd:"" help:"Create an API key for an account and print it once (the last line of stdout)."`
	List   APIKeyListCmd   `cmd:"" help:"List API keys (never the keys themselves)."`
	Revoke APIKeyRevokeCmd `cmd:"" help:"Revoke an API key by id; it stops working at once."`
}

// APIKeyCreateCmd creates a key.
type APIKeyCreateCmd struct {
	AppID string `name:"app-id" required:"" placeholder:"APP" help:"The account: the outbox app_id (Svix application uid) the key acts for."`
	Name  string `name:"name" placeholder:"NAME" help:"A name for people, e.g. who holds the key."`
}

// Validate checks the account id (exit code 2).
func (c *APIKeyCreateCmd) Validate() error {
	if err := outbox.ValidateAppID(c.AppID); err != nil {
		return usagef("--app-id: %v", err)
	}
	if n := len([]rune(c.Name)); n > apikey.MaxNameLength {
		return usagef("--name must be at most %d characters, got %d", apikey.MaxNameLength, n)
	}
	return nil
}

// Run creates the key; the key is the last line of stdout, details go
// before it.
func (c *APIKeyCreateCmd) Run(ctx context.Context, g *Globals) error {
	pool, err := g.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	k, text, err := apikey.NewStore(pool).Create(ctx, c.AppID, c.Name)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "created API key %d for app_id %s; it is shown only now, store it safely:\n", k.ID, k.AppID)
	fmt.Fprintln(os.Stdout, text)
	return nil
}

// APIKeyListCmd lists keys.
type APIKeyListCmd struct {
	AppID string `name:"app-id" placeholder:"APP" help:"Only the keys of this account."`
	JSON  bool   `name:"json" help:"Print a JSON array: id, app_id, name, prefix, created_at, last_used_at, revoked_at."`
}

// Run lists the keys.
func (c *APIKeyListCmd) Run(ctx context.Context, g *Globals) error {
	pool, err := g.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	keys, err := apikey.NewStore(pool).List(ctx, c.AppID)
	if err != nil {
		return err
	}
	if c.JSON {
		if keys == nil {
			keys = []apikey.Key{}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(keys)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAPP_ID\tNAME\tKEY\tCREATED\tLAST USED\tREVOKED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s...\t%s\t%s\t%s\n", k.ID, k.AppID, k.Name, k.Prefix, k.CreatedAt.UTC().Format(time.RFC3339), when(k.LastUsedAt), when(k.RevokedAt))
	}
	return tw.Flush()
}

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// APIKeyRevokeCmd revokes a key.
type APIKeyRevokeCmd struct {
	ID int64 `arg:"" name:"id" help:"The key's id (relay api-key list)."`
}

// Run revokes the key; an unknown id exits 1.
func (c *APIKeyRevokeCmd) Run(ctx context.Context, g *Globals) error {
	pool, err := g.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	k, err := apikey.NewStore(pool).Revoke(ctx, c.ID)
	if errors.Is(err, apikey.ErrNotFound) {
		return fmt.Errorf("no API key with id %d (relay api-key list shows them)", c.ID)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "revoked API key %d (app_id %s, %s...) at %s\n", k.ID, k.AppID, k.Prefix, k.RevokedAt.UTC().Format(time.RFC3339))
	return nil
}
