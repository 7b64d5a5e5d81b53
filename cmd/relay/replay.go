package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/mediaplatform/relay/internal/replay"
	"github.com/mediaplatform/relay/internal/status"
)

// ReplayCmd hands outbox rows back to the relay.
type ReplayCmd struct {
	ID             int64  `name:"id" placeholder:"N" help:"Replay the row with this id (any state but delivered; delivered too with --force-resend)."`
	Failed         bool   `name:"failed" help:"Select failed rows."`
	FailedSince    moment `name:"failed-since" placeholder:"TIME" help:"Select rows that failed at or after TIME (failed_at, however long before they were written; implies --failed): 2026-05-01T12:00:00Z, 2026-05-01 or an age such as 2h or 3d."`
	DeliveredSince moment `name:"delivered-since" placeholder:"TIME" help:"With --force-resend, select rows delivered at or after TIME (delivered_at)."`
	Since          moment `name:"since" hidden:"" placeholder:"TIME" help:"Renamed: --failed-since (or --delivered-since)."`
	EventType      string `name:"event-type" placeholder:"TYPE" help:"Select rows of this event type."`
	App            string `name:"app" placeholder:"APP_ID" help:"Select rows of this app_id."`
	ForceResend    bool   `name:"force-resend" help:"Send delivered rows again, as new Svix messages under a new key (the row key plus a resend counter), recorded on the row. With a selection, selects delivered rows."`
	DryRun         bool   `name:"dry-run" help:"Show what would be replayed; change nothing."`
	JSON           bool   `name:"json" help:"Print one JSON object per row and a summary object."`
}

// Help is shown by relay replay --help.
func (c *ReplayCmd) Help() string {
	return `Replays one row (--id) or a selection: --failed selects failed rows (--failed-since TIME those that failed at or after TIME), --force-resend delivered rows (sent again as new messages; --delivered-since TIME those delivered at or after TIME); --event-type and --app narrow either. Rows Svix never accepted keep their idempotency key, so Svix never holds two messages for them. Rows are re-queued through outbox_replay(id [, force => true]); a running relay picks them up at once.

Examples:
  relay replay --id 42
  relay replay --failed-since 2h --dry-run
  relay replay --failed --event-type asset.ready --app acme
  relay replay --id 42 --force-resend`
}

// Validate checks the flags (exit code 2).
func (c *ReplayCmd) Validate() error {
	if !c.FailedSince.IsZero() {
		c.Failed = true
	}
	selection := c.Failed || !c.DeliveredSince.IsZero() || c.EventType != "" || c.App != ""
	switch {
	case !c.Since.IsZero():
		return usagef("--since was renamed: --failed-since TIME selects rows that failed at or after TIME (failed_at, whenever they were written); with --force-resend, --delivered-since TIME selects rows delivered at or after TIME")
	case !c.DeliveredSince.IsZero() && !c.ForceResend:
		return usagef("--delivered-since selects delivered rows, which only --force-resend replays: add --force-resend, or use --failed-since for failed rows")
	case c.ID < 0:
		return usagef("--id must be a positive row id, got %d", c.ID)
	case c.ID > 0 && selection:
		return usagef("--id replays one row: it cannot be combined with --failed, --failed-since, --delivered-since, --event-type or --app")
	case c.ID == 0 && !selection && !c.ForceResend:
		return usagef("nothing to replay: give --id N, or a selection (--failed, and/or --force-resend for delivered rows, narrowed by --failed-since, --delivered-since, --event-type, --app)")
	case c.ID == 0 && !c.Failed && !c.ForceResend:
		return usagef("choose which rows: --failed (failed rows) and/or --force-resend (delivered rows, sent again as new messages)")
	case c.ID == 0 && c.ForceResend && c.DeliveredSince.IsZero() && c.EventType == "" && c.App == "":
		return usagef("--force-resend without --id would resend every delivered row: narrow it with --delivered-since, --event-type or --app")
	}
	return nil
}

// Run replays and prints one line per row.
func (c *ReplayCmd) Run(ctx context.Context, g *Globals) error {
	pool, err := g.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	opts := replay.Options{Force: c.ForceResend, DryRun: c.DryRun}
	enc := json.NewEncoder(os.Stdout)

	if c.ID > 0 {
		it, err := replay.One(ctx, pool, c.ID, opts)
		if errors.Is(err, status.ErrNotFound) {
			fmt.Fprintf(os.Stderr, "relay: no outbox row has id %d: nothing replayed\n", c.ID)
			return exitCode(1)
		}
		if err != nil {
			return err
		}
		if c.JSON {
			return enc.Encode(it)
		}
		fmt.Fprintln(os.Stdout, describe(it, c.DryRun))
		return nil
	}

	sel := replay.Selection{Failed: c.Failed, Delivered: c.ForceResend, FailedSince: c.FailedSince.Time, DeliveredSince: c.DeliveredSince.Time, EventType: c.EventType, AppID: c.App}
	sum, err := replay.Select(ctx, pool, sel, opts, func(it replay.Item) error {
		if c.JSON {
			return enc.Encode(it)
		}
		_, err := fmt.Fprintln(os.Stdout, describe(it, c.DryRun))
		return err
	})
	if err != nil {
		return err
	}
	if c.JSON {
		return enc.Encode(struct {
			Summary replay.Summary `json:"summary"`
			DryRun  bool           `json:"dry_run"`
		}{sum, c.DryRun})
	}
	verb := "replayed"
	if c.DryRun {
		verb = "would replay (dry run)"
	}
	fmt.Fprintf(os.Stdout, "%s %d rows: %d re-queued under their key, %d resent under a new key; %d skipped\n",
		verb, sum.Requeued+sum.Resent, sum.Requeued, sum.Resent, sum.Skipped)
	return nil
}

// describe is one row of a replay for people.
func describe(it replay.Item, dryRun bool) string {
	prefix := ""
	if dryRun {
		prefix = "would "
	}
	head := fmt.Sprintf("row %d (%s, %s, app %s): ", it.ID, it.State, it.EventType, it.AppID)
	switch it.Action {
	case replay.Requeue:
		return head + prefix + "re-queue under its key " + it.Key
	case replay.Resend:
		return head + prefix + "resend as a new message under key " + it.Key
	default:
		if it.State == "delivered" {
			return head + "skipped: already delivered (--force-resend sends it again as a new message)"
		}
		return head + "skipped: no longer matches the selection"
	}
}
