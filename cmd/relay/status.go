package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mediaplatform/relay/internal/status"
)

// StatusCmd prints the state of the outbox.
type StatusCmd struct {
	JSON     bool `name:"json" help:"Print the report as JSON (for scripts)."`
	Failures int  `name:"failures" default:"10" help:"How many of the latest failed rows to list."`
}

// Validate checks the flags (exit code 2).
func (c *StatusCmd) Validate() error {
	if c.Failures < 0 || c.Failures > 1000 {
		return usagef("--failures must be 0 to 1000, got %d", c.Failures)
	}
	return nil
}

// Run prints the report.
func (c *StatusCmd) Run(ctx context.Context, g *Globals) error {
	pool, err := g.pool(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	failures := c.Failures
	if failures == 0 {
		failures = -1 // none
	}
	rep, err := status.Read(ctx, pool, status.Options{Failures: failures})
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(os.Stdout, rep)
	return nil
}

func printStatus(w io.Writer, rep status.Report) {
	fmt.Fprintf(w, "outbox at %s\n", rep.At.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "  pending\t%d\t  not yet handed to the job queue\n", rep.Pending)
	fmt.Fprintf(tw, "  in flight\t%d\t  being sent or waiting for a retry\n", rep.InFlight)
	fmt.Fprintf(tw, "  delivered, last hour\t%d\t\n", rep.DeliveredLastHour)
	fmt.Fprintf(tw, "  failed\t%d\t  kept until replayed (relay replay --failed)\n", rep.Failed)
	tw.Flush()

	if o := rep.Oldest; o != nil {
		fmt.Fprintf(w, "\noldest undelivered: row %d, %s old (written %s), %s, %s for app %s, %d attempts\n",
			o.ID, o.Age().Round(time.Second), o.CreatedAt.UTC().Format(time.RFC3339), strings.ReplaceAll(o.State, "_", " "),
			o.EventType, o.AppID, o.Attempts)
		if o.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", o.LastError)
		}
	} else {
		fmt.Fprintln(w, "\noldest undelivered: none, every row is delivered or failed")
	}

	if len(rep.Failures) > 0 {
		fmt.Fprintf(w, "\nlatest failures (newest first):\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  ID\tFAILED AT\tEVENT TYPE\tAPP\tATTEMPTS\tREASON")
		for _, f := range rep.Failures {
			at := ""
			if f.FailedAt != nil {
				at = f.FailedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d\t%s\n", f.ID, at, f.EventType, f.AppID, f.Attempts, oneLine(f.LastError, 160))
		}
		tw.Flush()
	}
	printPartitions(w, rep.Partitions)
}

// oneLine keeps the first n characters of s on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "..."
	}
	return s
}

// printPartitions lists the outbox's partitions, oldest first.
func printPartitions(w io.Writer, parts []status.Partition) {
	ahead := 0
	for _, p := range parts {
		if p.Ahead {
			ahead++
		}
	}
	fmt.Fprintf(w, "\npartitions: %d, %d ready ahead (SELECT * FROM outbox_partition_blockers(now() - RETENTION) says what keeps one)\n", len(parts), ahead)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PARTITION\tFROM\tTO\tROWS (EST.)\tSIZE")
	for _, p := range parts {
		from := "(before partitioning)"
		if p.From != nil {
			from = p.From.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%.1f MB\n", p.Name, from, p.To.UTC().Format(time.RFC3339), p.RowsEstimate, float64(p.Bytes)/(1<<20))
	}
	tw.Flush()
}
