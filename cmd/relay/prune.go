package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/mediaplatform/relay/internal/retention"
)

// PruneCmd prunes old outbox rows by hand: delivered rows by dropping the
// partitions that hold only rows delivered before the cutoff, failed rows
// (only when asked) by deleting them in batches. A running relay already
// drops partitions past RELAY_RETENTION on its own; failed rows are pruned
// only here.
type PruneCmd struct {
	Retention       age    `name:"retention" env:"RELAY_RETENTION" default:"7d" help:"Partitions whose rows were all delivered longer ago than this are dropped, unless --delivered-before is given; 0 keeps delivered rows."`
	DeliveredBefore moment `name:"delivered-before" placeholder:"TIME" help:"Drop the partitions whose rows were all delivered before TIME (2026-05-01T12:00:00Z, 2026-05-01 or an age such as 3d)."`
	FailedBefore    moment `name:"failed-before" placeholder:"TIME" help:"Also delete rows that failed before TIME and were not replayed (they are kept otherwise)."`
	Batch           int    `name:"batch" env:"RELAY_PRUNE_BATCH" default:"1000" help:"Most failed rows deleted (or moved out of a partition to drop) per transaction."`
	DryRun          bool   `name:"dry-run" help:"Count what would be deleted; delete nothing."`
	JSON            bool   `name:"json" help:"Print the counts as JSON."`
}

// Validate checks the flags (exit code 2).
func (c *PruneCmd) Validate() error {
	switch {
	case c.Batch < 1 || c.Batch > 100000:
		return usagef("RELAY_PRUNE_BATCH (--batch) must be 1 to 100000, got %d", c.Batch)
	case time.Duration(c.Retention) != 0 && time.Duration(c.Retention) < time.Minute:
		return usagef("RELAY_RETENTION (--retention) must be at least 1m (or 0 to keep delivered rows), got %s", c.Retention)
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
		dropVerb := "dropped"
		if c.DryRun {
			dropVerb = "would drop (dry run)"
		}
		fmt.Fprintf(os.Stdout, "%s %d partitions (about %d rows) delivered before %s\n", dropVerb, len(res.Partitions), res.Delivered,
			opts.DeliveredBefore.UTC().Format(time.RFC3339))
		for _, p := range res.Partitions {
			fmt.Fprintf(os.Stdout, "  %s\n", p.Name)
		}
		if res.Moved > 0 {
			fmt.Fprintf(os.Stdout, "moved %d failed rows out of them to the current partition\n", res.Moved)
		}
		for _, p := range res.Kept {
			fmt.Fprintf(os.Stdout, "kept %s: %s\n", p.Name, p.Blocker)
		}
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
