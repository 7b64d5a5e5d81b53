package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/mediaplatform/relay/internal/retention"
)

// PruneCmd deletes old outbox rows by hand. A running relay already prunes
// delivered rows past RELAY_RETENTION on its own; failed rows are pruned
// only here.
type PruneCmd struct {
	Retention       age    `name:"retention" env:"RELAY_RETENTION" default:"7d" help:"Delivered rows older than this are deleted, unless --delivered-before is given; 0 keeps delivered rows."`
	DeliveredBefore moment `name:"delivered-before" placeholder:"TIME" help:"Delete rows delivered before TIME (2026-05-01T12:00:00Z, 2026-05-01 or an age such as 3d)."`
	FailedBefore    moment `name:"failed-before" placeholder:"TIME" help:"Also delete rows that failed before TIME and were not replayed (they are kept otherwise)."`
	Batch           int    `name:"batch" env:"RELAY_PRUNE_BATCH" default:"1000" help:"Most rows deleted per transaction."`
	DryRun          bool   `name:"dry-run" help:"Count what would be deleted; delete nothing."`
	JSON            bool   `name:"json" help:"Print the counts as JSON."`
}

// Validate checks the flags (exit code 2).
func (c *PruneCmd) Validate() error {
	switch {
	case c.Batch < 1 || c.Batch > 100000:
		return usagef("RELAY_PRUNE_BATCH (--batch) must be 1 to 100000, got %d", c.Batch)
	case time.Duration(c.Retention) != 0 && time.Duration(c.Retention) < time.Hour:
		return usagef("RELAY_RETENTION (--retention) must be at least 1h (or 0 to keep delivered rows), got %s", c.Retention)
	}
	return nil
}

// Run deletes (or counts) and prints what it did.
func (c *PruneCmd) Run(ctx context.Context, g *Globals) error {
	pool, err := g.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()

	opts := retention.Options{DeliveredBefore: c.DeliveredBefore.Time, FailedBefore: c.FailedBefore.Time, Batch: c.Batch}
	if opts.DeliveredBefore.IsZero() && c.Retention != 0 {
		opts.DeliveredBefore = time.Now().Add(-time.Duration(c.Retention))
	}
	if opts.DeliveredBefore.IsZero() && opts.FailedBefore.IsZero() {
		fmt.Fprintln(os.Stdout, "nothing to prune: retention is 0 and neither --delivered-before nor --failed-before is given")
		return nil
	}

	var res retention.Result
	batches := 0
	if c.DryRun {
		res, err = retention.Count(ctx, pool, opts)
	} else {
		opts.OnBatch = func(string, int64) { batches++ }
		res, err = retention.Prune(ctx, pool, opts)
	}
	if err != nil {
		return err
	}
	if c.JSON {
		return json.NewEncoder(os.Stdout).Encode(struct {
			retention.Result
			DeliveredBefore *time.Time `json:"delivered_before"`
			FailedBefore    *time.Time `json:"failed_before"`
			Batches         int        `json:"batches"`
			DryRun          bool       `json:"dry_run"`
		}{res, timeOrNil(opts.DeliveredBefore), timeOrNil(opts.FailedBefore), batches, c.DryRun})
	}
	verb := "deleted"
	if c.DryRun {
		verb = "would delete (dry run)"
	}
	if !opts.DeliveredBefore.IsZero() {
		fmt.Fprintf(os.Stdout, "%s %d rows delivered before %s\n", verb, res.Delivered, opts.DeliveredBefore.UTC().Format(time.RFC3339))
	}
	if !opts.FailedBefore.IsZero() {
		fmt.Fprintf(os.Stdout, "%s %d rows failed before %s\n", verb, res.Failed, opts.FailedBefore.UTC().Format(time.RFC3339))
	}
	if !c.DryRun {
		fmt.Fprintf(os.Stdout, "in %d transactions of at most %d rows\n", batches, c.Batch)
	}
	return nil
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
