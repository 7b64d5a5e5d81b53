package live_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/testkit"
	"github.com/mediaplatform/relay/live"
)

func TestStream(t *testing.T) {
	t.Parallel()

	t.Run("HeadersAndEventShape", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		s := b.open(t, "acme", "")
		for name, want := range map[string]string{
			"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
		} {
			if got := s.resp.Header.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		if ce := s.resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
			t.Errorf("Content-Encoding %q: the stream must not be compressed", ce)
		}
		first := <-s.frames
		if first.Retry == "" || first.ID == "" {
			t.Fatalf("first frame %+v: want a retry hint and the starting id", first)
		}
		if _, err := b.pool.Exec(context.Background(), insertReadySQL, "acme", "e1", "a1"); err != nil {
			t.Fatal(err)
		}
		e := s.next(t)
		if e.Event != "asset.ready" || e.ID == "" || e.ID == first.ID {
			t.Fatalf("event %+v: want asset.ready with a new id", e)
		}
		var got body
		if err := json.Unmarshal([]byte(e.Data), &got); err != nil {
			t.Fatalf("data %q is not JSON: %v", e.Data, err)
		}
		var data map[string]string
		if err := json.Unmarshal(got.Data, &data); err != nil {
			t.Fatal(err)
		}
		if got.Type != "asset.ready" || data["entity_id"] != "e1" || data["asset_id"] != "a1" || data["previous_state"] != "processing" || len(data) != 3 {
			t.Fatalf("data %s: want the webhook body of the row", e.Data)
		}
		if _, err := time.Parse(time.RFC3339Nano, got.CreatedAt); err != nil {
			t.Fatalf("created_at %q: %v", got.CreatedAt, err)
		}
	})

	t.Run("BigNumbersAndTextSurvive", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		s := b.open(t, "acme", "")
		if _, err := b.pool.Exec(context.Background(), `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'cut.failed',
			'{"entity_id": "é\n2", "asset_id": "a", "n": 9007199254740993}')`); err != nil {
			t.Fatal(err)
		}
		e := s.next(t)
		if !strings.Contains(e.Data, `9007199254740993`) || !strings.Contains(e.Data, `"é\n2"`) {
			t.Fatalf("data %q: want the number and text exactly as stored, on one line", e.Data)
		}
	})

	t.Run("AccountsAreIsolated", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		acme := b.open(t, "acme", "")
		other := b.open(t, "other", "")
		add(t, b.pool, "other", "cut.completed", "o1", "a")
		add(t, b.pool, "acme", "cut.completed", "x1", "a")
		add(t, b.pool, "other", "cut.completed", "o2", "a")
		add(t, b.pool, "acme", "cut.completed", "x2", "a")
		acme.expectNext(t, "x1", "x2")
		other.expectNext(t, "o1", "o2")

		// A cursor taken from another account's stream replays only the
		// caller's rows after that position (x2 came after o2).
		resumed := b.open(t, "acme", "?last_event_id="+other.last())
		add(t, b.pool, "acme", "cut.completed", "x3", "a")
		resumed.expectNext(t, "x2", "x3")
	})

	t.Run("Filters", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		types := b.open(t, "acme", "?types=cut.failed,render.completed")
		asset := b.open(t, "acme", "?asset_id=a2")
		both := b.open(t, "acme", "?types=cut.failed&asset_id=a2")
		add(t, b.pool, "acme", "cut.completed", "1", "a1")
		add(t, b.pool, "acme", "cut.failed", "2", "a1")
		add(t, b.pool, "acme", "render.completed", "3", "a2")
		add(t, b.pool, "acme", "cut.failed", "4", "a2")
		types.expectNext(t, "2", "3", "4")
		asset.expectNext(t, "3", "4")
		both.expectNext(t, "4")
	})

	t.Run("BadFiltersAreRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		for _, tc := range []struct{ query, code, param string }{
			{"?types=cut.failed,nope", "unknown_event_type", "types"},
			{"?types=cut.failed,", "invalid_types", "types"},
			{"?asset_id=", "invalid_asset_id", "asset_id"},
			{"?asset_id=a&asset_id=b", "invalid_asset_id", "asset_id"},
			{"?last_event_id=42", "invalid_cursor", "last_event_id"},
		} {
			resp, cancel := b.get(t, "acme", tc.query)
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", tc.query, resp.StatusCode)
			}
			code, param := envelope(t, resp)
			cancel()
			if code != tc.code || param != tc.param {
				t.Errorf("%s: code %q param %q, want %q %q", tc.query, code, param, tc.code, tc.param)
			}
		}
		resp, cancel := b.get(t, "acme", "", "Last-Event-ID", "not-a-cursor")
		defer cancel()
		if code, param := envelope(t, resp); resp.StatusCode != 400 || code != "invalid_cursor" || param != "Last-Event-ID" {
			t.Errorf("bad Last-Event-ID: %d %s %s, want 400 invalid_cursor Last-Event-ID", resp.StatusCode, code, param)
		}
	})

	t.Run("Heartbeat", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *live.Config) { c.Heartbeat = 50 * time.Millisecond })
		s := b.open(t, "acme", "")
		for range 3 {
			select {
			case f := <-s.frames:
				if f.Comment == "" && f.Event != "" {
					t.Fatalf("unexpected event %+v on an idle stream", f)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no heartbeat within 10s")
			}
		}
		comments := 0
		for comments < 3 {
			select {
			case f := <-s.frames:
				if f.Comment != "" {
					comments++
				}
			case <-time.After(10 * time.Second):
				t.Fatal("heartbeats stopped")
			}
		}
	})

	t.Run("OutlivesServerTimeouts", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *live.Config) { c.Heartbeat = 50 * time.Millisecond },
			func(s *http.Server) { s.ReadTimeout, s.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond })
		s := b.open(t, "acme", "")
		// 20 heartbeats take well past both server timeouts.
		for n := 0; n < 20; {
			select {
			case f := <-s.frames:
				if f.Comment != "" {
					n++
				}
			case <-s.done:
				t.Fatal("the server's timeouts cut an idle stream")
			}
		}
		add(t, b.pool, "acme", "cut.completed", "late", "a")
		s.expectNext(t, "late")
	})

	t.Run("PollOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *live.Config) { c.PollOnly = true; c.PollInterval = 50 * time.Millisecond })
		s := b.open(t, "acme", "")
		add(t, b.pool, "acme", "cut.completed", "p1", "a")
		add(t, b.pool, "acme", "cut.completed", "p2", "a")
		s.expectNext(t, "p1", "p2")
	})
}

func TestResume(t *testing.T) {
	t.Parallel()

	// Events 1-3 live, 4-5 while away, then resume and 6 live.
	run := func(t *testing.T, reopen func(b *bundle, cursor string) *stream) {
		b := setup(t, nil)
		s := b.open(t, "acme", "")
		for _, e := range []string{"1", "2", "3"} {
			add(t, b.pool, "acme", "cut.completed", e, "a")
		}
		s.expectNext(t, "1", "2", "3")
		cursor := s.last()
		s.close()
		add(t, b.pool, "acme", "cut.completed", "4", "a")
		add(t, b.pool, "other", "cut.completed", "x", "a")
		add(t, b.pool, "acme", "cut.completed", "5", "a")
		r := reopen(b, cursor)
		r.expectNext(t, "4", "5")
		add(t, b.pool, "acme", "cut.completed", "6", "a")
		r.expectNext(t, "6") // nothing twice: 6 comes right after 5
	}
	t.Run("ByHeader", func(t *testing.T) {
		t.Parallel()
		run(t, func(b *bundle, c string) *stream { return b.open(t, "acme", "", "Last-Event-ID", c) })
	})
	t.Run("ByQuery", func(t *testing.T) {
		t.Parallel()
		run(t, func(b *bundle, c string) *stream { return b.open(t, "acme", "?last_event_id="+c) })
	})
	t.Run("HeaderWinsOverQuery", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		s := b.open(t, "acme", "")
		add(t, b.pool, "acme", "cut.completed", "1", "a")
		s.expectNext(t, "1")
		older := s.last()
		add(t, b.pool, "acme", "cut.completed", "2", "a")
		s.expectNext(t, "2")
		r := b.open(t, "acme", "?last_event_id="+older, "Last-Event-ID", s.last())
		add(t, b.pool, "acme", "cut.completed", "3", "a")
		r.expectNext(t, "3")
	})
	t.Run("FromTheStartingID", func(t *testing.T) {
		// A client that saw no event resumes from the id of the stream's
		// first frame, not from "now".
		t.Parallel()
		b := setup(t, nil)
		s := b.open(t, "acme", "")
		start := (<-s.frames).ID
		s.close()
		add(t, b.pool, "acme", "cut.completed", "while-away", "a")
		r := b.open(t, "acme", "", "Last-Event-ID", start)
		r.expectNext(t, "while-away")
	})
	t.Run("WithFilters", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		s := b.open(t, "acme", "?types=cut.failed")
		add(t, b.pool, "acme", "cut.failed", "1", "a")
		s.expectNext(t, "1")
		s.close()
		add(t, b.pool, "acme", "cut.completed", "skip", "a")
		add(t, b.pool, "acme", "cut.failed", "2", "a")
		r := b.open(t, "acme", "?types=cut.failed&last_event_id="+s.last())
		r.expectNext(t, "2")
	})
}

// TestLateCommit: transaction 1 inserts and stays open, transaction 2
// inserts and commits: the stream shows 2. Transaction 1 commits: the
// stream shows 1. A client resuming from 2's cursor still gets 1.
func TestLateCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	s := b.open(t, "acme", "")

	tx1, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback(ctx) //nolint:errcheck // committed below
	// Different assets: rows of one asset take turns at INSERT (the
	// per-asset order key), rows of different assets do not.
	add(t, tx1, "acme", "cut.completed", "1", "asset-1")
	add(t, b.pool, "acme", "cut.completed", "2", "asset-2")
	s.expectNext(t, "2")
	cursor2 := s.last()

	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s.expectNext(t, "1")

	r := b.open(t, "acme", "", "Last-Event-ID", cursor2)
	r.expectNext(t, "1")
	add(t, b.pool, "acme", "cut.completed", "3", "a")
	r.expectNext(t, "3")
	s.expectNext(t, "3")
}

func TestReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	reset := func(t *testing.T, s *stream, reason string) {
		t.Helper()
		e := s.next(t)
		if e.Event != "reset" || !strings.Contains(e.Data, `"reason":"`+reason+`"`) || e.ID == "" {
			t.Fatalf("first event %+v, want a reset (%s) with an id", e, reason)
		}
	}

	t.Run("PrunedRows", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		s := b.open(t, "acme", "")
		add(t, b.pool, "acme", "cut.completed", "1", "a")
		add(t, b.pool, "acme", "cut.completed", "2", "a")
		s.expectNext(t, "1", "2")
		cursor := s.last()
		add(t, b.pool, "acme", "cut.completed", "3", "a")
		s.expectNext(t, "3")
		if _, err := b.pool.Exec(ctx, `DELETE FROM outbox WHERE data->>'entity_id' = '3'`); err != nil {
			t.Fatal(err)
		}
		r := b.open(t, "acme", "", "Last-Event-ID", cursor)
		reset(t, r, "rows_pruned")
		add(t, b.pool, "acme", "cut.completed", "4", "a")
		r.expectNext(t, "4")

		// Pruning rows before a cursor costs it nothing.
		if _, err := b.pool.Exec(ctx, `DELETE FROM outbox WHERE data->>'entity_id' = '1'`); err != nil {
			t.Fatal(err)
		}
		add(t, b.pool, "acme", "cut.completed", "5", "a")
		r.expectNext(t, "5")
		after := r.last()
		add(t, b.pool, "acme", "cut.completed", "6", "a")
		r.expectNext(t, "6")
		again := b.open(t, "acme", "?last_event_id="+after)
		again.expectNext(t, "6")
	})

	t.Run("Truncated", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		s := b.open(t, "acme", "")
		add(t, b.pool, "acme", "cut.completed", "1", "a")
		s.expectNext(t, "1")
		cursor := s.last()
		add(t, b.pool, "acme", "cut.completed", "2", "a")
		s.expectNext(t, "2")
		if _, err := b.pool.Exec(ctx, `TRUNCATE outbox`); err != nil {
			t.Fatal(err)
		}
		r := b.open(t, "acme", "", "Last-Event-ID", cursor)
		reset(t, r, "rows_pruned")
	})

	t.Run("ReplayLimit", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *live.Config) { c.ReplayLimit = 2 })
		s := b.open(t, "acme", "")
		add(t, b.pool, "acme", "cut.completed", "0", "a")
		s.expectNext(t, "0")
		cursor := s.last()
		s.close()
		for _, e := range []string{"1", "2"} {
			add(t, b.pool, "acme", "cut.completed", e, "a")
		}
		within := b.open(t, "acme", "", "Last-Event-ID", cursor)
		within.expectNext(t, "1", "2")
		add(t, b.pool, "acme", "cut.completed", "3", "a")
		within.expectNext(t, "3") // the reader has seen 3: it is replayed, not live
		over := b.open(t, "acme", "", "Last-Event-ID", cursor)
		reset(t, over, "replay_limit")
		add(t, b.pool, "acme", "cut.completed", "4", "a")
		over.expectNext(t, "4")
	})

	t.Run("AnotherDatabase", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		r := b.open(t, "acme", "", "Last-Event-ID", "0123456789abcdef-5")
		reset(t, r, "cursor_from_another_database")
		add(t, b.pool, "acme", "cut.completed", "1", "a")
		r.expectNext(t, "1")
	})

	t.Run("AheadOfTheDatabase", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		s := b.open(t, "acme", "")
		start := (<-s.frames).ID
		epoch, _, _ := strings.Cut(start, "-")
		r := b.open(t, "acme", "", "Last-Event-ID", epoch+"-999999")
		reset(t, r, "cursor_ahead_of_database")
		add(t, b.pool, "acme", "cut.completed", "1", "a")
		r.expectNext(t, "1")
	})
}

func TestSlowClientIsCutOff(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *live.Config) { c.Buffer = 4; c.WriteTimeout = 500 * time.Millisecond })
	healthy := b.open(t, "acme", "")

	// A client that reads nothing: its socket buffers fill, then its queue.
	resp, cancel := b.get(t, "acme", "")
	defer cancel()
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	testkit.WaitFor(t, 10*time.Second, "two streams", func() bool { return b.h.Streams() == 2 })
	big := strings.Repeat("x", 60000)
	var want []string
	for i := range 200 {
		id := "e" + strings.Repeat("0", 3-len(itoa(i))) + itoa(i)
		want = append(want, id)
		if _, err := b.pool.Exec(context.Background(), `INSERT INTO outbox (app_id, event_type, data)
			VALUES ('acme', 'cut.completed', jsonb_build_object('entity_id', $1::text, 'asset_id', 'a', 'pad', $2::text))`, id, big); err != nil {
			t.Fatal(err)
		}
		healthy.expectNext(t, id) // a reader that keeps up is never cut off
	}
	testkit.WaitFor(t, 10*time.Second, "the slow stream to be cut off", func() bool { return b.h.Streams() == 1 })
	// The cut-off client finds the end of its stream once it reads.
	if _, err := io.Copy(io.Discard, resp.Body); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Logf("slow stream ended with %v", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestTwoReplicas: a page moves between replicas behind a load balancer;
// the cursor one gave resumes on the other, and both number rows in turn.
func TestTwoReplicas(t *testing.T) {
	t.Parallel()
	a := setup(t, nil)
	h2, err := live.New(live.Config{DB: a.pool, Secret: secret, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h2.Run(ctx) }()
	srv2 := httptest.NewServer(h2)
	t.Cleanup(func() { cancel(); <-done; srv2.Close() })
	b := &bundle{pool: a.pool, h: h2, srv: srv2}

	s := a.open(t, "acme", "")
	add(t, a.pool, "acme", "cut.completed", "1", "a")
	s.expectNext(t, "1")
	s.close()
	add(t, a.pool, "acme", "cut.completed", "2", "a")
	r := b.open(t, "acme", "", "Last-Event-ID", s.last())
	r.expectNext(t, "2")
	add(t, a.pool, "acme", "cut.completed", "3", "a")
	r.expectNext(t, "3")
}
