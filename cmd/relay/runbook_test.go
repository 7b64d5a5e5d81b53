package main_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// runbookBlock returns the SQL block of docs/operations.md that follows the
// line starting with marker, up to the end of its fence.
func runbookBlock(t *testing.T, marker string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), marker)
	if !ok {
		t.Fatalf("docs/operations.md has no %q", marker)
	}
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatalf("docs/operations.md: the block after %q does not end", marker)
	}
	_, block, _ = strings.Cut(block, "\n") // the rest of the marker's line
	return block
}

// psqlProgram finds psql, failing the test without one (make test installs
// PostgreSQL, psql included).
func psqlProgram(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("psql"); err == nil {
		return p
	}
	if found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/psql"); len(found) > 0 {
		return found[len(found)-1]
	}
	t.Fatal("no psql: install PostgreSQL's client")
	return ""
}

// psqlIn runs script with psql in schema s, returning its output (tuples
// only, unaligned, quiet).
func psqlIn(t *testing.T, s pgtest.Schema, script string) string {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Del("search_path") // psql does not know it: PGOPTIONS sets it
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, psqlProgram(t), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", u.String())
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c search_path="+s.Name)
	cmd.Stdin = strings.NewReader(script)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("psql: %v\n%s", err, stderr.String())
	}
	return out.String()
}

// The runbook's batch replay of rows failed since a time ends even when the
// replayed rows fail again: each pass below replays a batch, then fails
// every row it replayed again (as Svix refusing them once more would).
func TestRunbookReplayLoopEnds(t *testing.T) {
	t.Parallel()
	s, pool := pgtest.Migrated(t)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `
		INSERT INTO outbox (app_id, event_type, data)
		SELECT 'acme', 'render.completed', jsonb_build_object('entity_id', 'r' || i, 'asset_id', 'a1')
		  FROM generate_series(1, 3) AS i`); err != nil {
		t.Fatal(err)
	}
	// All three failed after the window's start (the docs' example time).
	if _, err := pool.Exec(ctx, `UPDATE outbox SET enqueued_at = now(), failed_at = now(), last_error = 'svix 422'`); err != nil {
		t.Fatal(err)
	}

	block := runbookBlock(t, "-- replay-failed-since")
	setup, batch, ok := strings.Cut(block, "\\gset\n")
	if !ok {
		t.Fatalf("the runbook's replay block fixes no window end with \\gset:\n%s", block)
	}
	const failAgain = `UPDATE outbox SET enqueued_at = clock_timestamp(), failed_at = clock_timestamp(), last_error = 'svix 422 again'
 WHERE failed_at IS NULL AND delivered_at IS NULL;
`
	script := setup + "\\gset\n" + strings.Repeat(batch+"\n"+failAgain, 4)
	got := strings.Fields(psqlIn(t, s, script))
	want := []string{"3", "0", "0", "0"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("replayed per pass %v, want %v: rows that fail again must not be replayed again", got, want)
	}
	if n := count(t, pool, "failed_at IS NOT NULL AND last_error = 'svix 422 again'"); n != 3 {
		t.Errorf("%d rows failed again, want 3 (kept failed for the next replay)", n)
	}
}
