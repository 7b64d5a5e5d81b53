package replay_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/internal/msgkey"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/replay"
	"github.com/mediaplatform/relay/internal/status"
	"github.com/mediaplatform/relay/internal/testkit"
)

const (
	pending   = ""
	inFlight  = "enqueued_at = now(), attempts = 4, last_error = 'svix 503'"
	delivered = "enqueued_at = now(), delivered_at = now(), svix_message_id = 'msg_1'"
	failed    = "enqueued_at = now(), failed_at = now(), attempts = 1, last_error = '422 validation'"
	// failedAgo fails a row at a given time.
	failedAgo = "enqueued_at = now(), attempts = 1, last_error = '422 validation'"
)

// insert writes one row of typ for app in a state (SQL after SET).
func insert(t *testing.T, pool *pgxpool.Pool, app, typ, set string) int64 {
	t.Helper()
	return testkit.InsertRow(t, pool, app, typ, `{"entity_id":"e1","asset_id":"a1","previous_state":"processing"}`, set)
}

func row(t *testing.T, pool *pgxpool.Pool, id int64) status.Row {
	t.Helper()
	r, err := status.Get(t.Context(), pool, id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestOne(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name       string
		set        string
		force      bool
		wantAction replay.Action
		wantState  string // after
		resends    int    // after
	}{
		{"Failed", failed, false, replay.Requeue, status.StatePending, 0},
		{"FailedForced", failed, true, replay.Requeue, status.StatePending, 0}, // never accepted: its key is kept
		{"InFlight", inFlight, false, replay.Requeue, status.StatePending, 0},
		{"Pending", pending, false, replay.Requeue, status.StatePending, 0},
		{"Delivered", delivered, false, replay.Skip, status.StateDelivered, 0},
		{"DeliveredForced", delivered, true, replay.Resend, status.StatePending, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pool := pgtest.Pool(t)
			id := insert(t, pool, "acme", "asset.ready", tt.set)
			before := row(t, pool, id)

			// A dry run tells the same and changes nothing.
			dry, err := replay.One(t.Context(), pool, id, replay.Options{Force: tt.force, DryRun: true})
			if err != nil {
				t.Fatal(err)
			}
			if after := row(t, pool, id); after.State != before.State || after.Resends != before.Resends || after.ReplayedAt != nil {
				t.Errorf("dry run changed the row: %+v -> %+v", before, after)
			}

			it, err := replay.One(t.Context(), pool, id, replay.Options{Force: tt.force})
			if err != nil {
				t.Fatal(err)
			}
			if dry != it {
				t.Errorf("dry run %+v, replay %+v: want the same report", dry, it)
			}
			if it.Action != tt.wantAction || it.State != before.State {
				t.Errorf("item %+v, want action %s from state %s", it, tt.wantAction, before.State)
			}
			after := row(t, pool, id)
			if after.State != tt.wantState || after.Resends != tt.resends {
				t.Errorf("after replay: state %s resends %d, want %s %d", after.State, after.Resends, tt.wantState, tt.resends)
			}
			// The key reported is the one the relay will send under.
			if wantKey := msgkey.Format(id, before.CreatedAt, tt.resends); it.Key != wantKey || after.Key != wantKey {
				t.Errorf("key reported %q, row's key now %q, want %q", it.Key, after.Key, wantKey)
			}
			if it.Action != replay.Skip {
				if after.Attempts != 0 || after.LastError != "" || after.FailedAt != nil || after.ReplayedAt == nil {
					t.Errorf("replayed row not reset: %+v", after)
				}
			} else if after.ReplayedAt != nil {
				t.Error("a skipped row was marked replayed")
			}
		})
	}

	t.Run("NotFound", func(t *testing.T) {
		t.Parallel()
		pool := pgtest.Pool(t)
		if _, err := replay.One(t.Context(), pool, 4242, replay.Options{}); !errors.Is(err, status.ErrNotFound) {
			t.Errorf("One(unknown id) = %v, want ErrNotFound", err)
		}
	})
}

func TestSelect(t *testing.T) {
	t.Parallel()

	type bundle struct {
		pool                                  *pgxpool.Pool
		failedA, failedB, failedOther, oldF   int64
		staleF                                int64
		deliveredA, deliveredB, pend, inflite int64
	}
	setup := func(t *testing.T) bundle {
		t.Helper()
		pool := pgtest.Pool(t)
		b := bundle{pool: pool}
		// Written 72 h ago, failed 1 h ago (gave up at max age after an
		// outage): a selection of rows failed since 2 h ago includes it.
		b.oldF = insert(t, pool, "acme", "asset.ready", failedAgo+", created_at = now() - interval '72 hours', failed_at = now() - interval '1 hour'")
		b.staleF = insert(t, pool, "acme", "asset.ready", failedAgo+", created_at = now() - interval '4 days', failed_at = now() - interval '3 days'")
		b.failedA = insert(t, pool, "acme", "asset.ready", failed)
		b.failedB = insert(t, pool, "beta", "asset.ready", failed)
		b.failedOther = insert(t, pool, "acme", "render.completed", failed)
		b.deliveredA = insert(t, pool, "acme", "asset.ready", delivered)
		b.deliveredB = insert(t, pool, "beta", "asset.ready", delivered)
		b.pend = insert(t, pool, "acme", "asset.ready", pending)
		b.inflite = insert(t, pool, "acme", "asset.ready", inFlight)
		return b
	}
	collect := func(t *testing.T, b bundle, sel replay.Selection, opts replay.Options) ([]replay.Item, replay.Summary) {
		t.Helper()
		var items []replay.Item
		sum, err := replay.Select(t.Context(), b.pool, sel, opts, func(it replay.Item) error {
			items = append(items, it)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return items, sum
	}
	ids := func(items []replay.Item) []int64 {
		var out []int64
		for _, it := range items {
			out = append(out, it.ID)
		}
		return out
	}

	t.Run("FailedNarrowed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		sel := replay.Selection{Failed: true, FailedSince: time.Now().Add(-2 * time.Hour), EventType: "asset.ready", AppID: "acme"}
		dry, dsum := collect(t, b, sel, replay.Options{DryRun: true})
		items, sum := collect(t, b, sel, replay.Options{})
		if want := []int64{b.oldF, b.failedA}; !slices.Equal(ids(items), want) || sum != (replay.Summary{Requeued: 2}) {
			t.Errorf("replayed %v (%+v), want rows %v (failed in the last 2 h, whenever written)", ids(items), sum, want)
		}
		if !slices.Equal(dry, items) || dsum != sum {
			t.Errorf("dry run %v %+v, replay %v %+v: want the same", dry, dsum, items, sum)
		}
		for _, id := range []int64{b.oldF, b.failedA} {
			if r := row(t, b.pool, id); r.State != status.StatePending {
				t.Errorf("row %d is %s after replay, want pending", id, r.State)
			}
		}
		for _, id := range []int64{b.staleF, b.failedB, b.failedOther} {
			if r := row(t, b.pool, id); r.State != status.StateFailed {
				t.Errorf("row %d outside the selection is %s, want still failed", id, r.State)
			}
		}
	})

	t.Run("AllFailed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		items, sum := collect(t, b, replay.Selection{Failed: true}, replay.Options{})
		if want := []int64{b.oldF, b.staleF, b.failedA, b.failedB, b.failedOther}; !slices.Equal(ids(items), want) || sum.Requeued != 5 {
			t.Errorf("replayed %v (%+v), want %v", ids(items), sum, want)
		}
		// Pending, in-flight and delivered rows are not touched by a selection.
		if r := row(t, b.pool, b.inflite); r.Attempts != 4 || r.ReplayedAt != nil {
			t.Errorf("in-flight row touched: %+v", r)
		}
	})

	t.Run("DeliveredForced", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		sel := replay.Selection{Delivered: true, AppID: "beta"}
		items, sum := collect(t, b, sel, replay.Options{Force: true})
		if !slices.Equal(ids(items), []int64{b.deliveredB}) || sum != (replay.Summary{Resent: 1}) {
			t.Fatalf("resent %v (%+v), want row %d", ids(items), sum, b.deliveredB)
		}
		r := row(t, b.pool, b.deliveredB)
		if r.State != status.StatePending || r.Resends != 1 || items[0].Key != msgkey.Format(r.ID, r.CreatedAt, 1) {
			t.Errorf("resent row %+v, item %+v: want pending with resends 1 and the _r1 key", r, items[0])
		}
		// Without force the same selection skips them.
		items, sum = collect(t, b, replay.Selection{Delivered: true, AppID: "acme"}, replay.Options{})
		if sum != (replay.Summary{Skipped: 1}) || items[0].Action != replay.Skip {
			t.Errorf("unforced: %+v %+v, want one skip", items, sum)
		}
		if r := row(t, b.pool, b.deliveredA); r.State != status.StateDelivered {
			t.Errorf("unforced delivered row is %s, want still delivered", r.State)
		}
	})

	t.Run("DeliveredSince", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		old := insert(t, b.pool, "beta", "asset.ready", "enqueued_at = now(), svix_message_id = 'msg_2', created_at = now() - interval '10 days', delivered_at = now() - interval '30 minutes'")
		_ = insert(t, b.pool, "beta", "asset.ready", "enqueued_at = now(), svix_message_id = 'msg_3', created_at = now() - interval '10 days', delivered_at = now() - interval '9 days'")
		sel := replay.Selection{Delivered: true, DeliveredSince: time.Now().Add(-time.Hour), AppID: "beta"}
		items, _ := collect(t, b, sel, replay.Options{Force: true, DryRun: true})
		if want := []int64{b.deliveredB, old}; !slices.Equal(ids(items), want) {
			t.Errorf("selected %v, want %v (delivered in the last hour, whenever written)", ids(items), want)
		}
	})

	t.Run("NothingChosen", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if _, err := replay.Select(t.Context(), b.pool, replay.Selection{AppID: "acme"}, replay.Options{}, func(replay.Item) error { return nil }); err == nil {
			t.Error("a selection of neither failed nor delivered rows was accepted")
		}
	})
}
