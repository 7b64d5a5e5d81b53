package dispatch_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/outbox"
)

func TestDeliverArgsJSON(t *testing.T) {
	t.Parallel()

	full := dispatch.DeliverArgs{
		OutboxID: 42, CreatedUS: 1_764_290_000_123_456, Resends: 2,
		AppID: "acme", EventType: "asset.ready",
		Data:     json.RawMessage(`{"asset_id":"a1","entity_id":"a1","big":9007199254740993,"previous_state":"processing"}`),
		OrderSeq: 7, AssetID: "a1", EntityID: "a1", HeadOfKey: true,
	}

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		for _, a := range []dispatch.DeliverArgs{full, {OutboxID: 1, CreatedUS: 2, AppID: "x", EventType: "cut.failed", Data: json.RawMessage(`{}`)}} {
			b, err := json.Marshal(a)
			if err != nil {
				t.Fatal(err)
			}
			var got dispatch.DeliverArgs
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("unmarshal %s: %v", b, err)
			}
			if !reflect.DeepEqual(got, a) {
				t.Errorf("round trip of %s:\n got %+v\nwant %+v", b, got, a)
			}
		}
	})

	// River derives the unique key from the top-level outbox_id and
	// resends, and River UI finds a row's job by outbox_id: those stay
	// fields, the rest is one string.
	t.Run("IdentityStaysTopLevel", func(t *testing.T) {
		t.Parallel()
		b, err := json.Marshal(full)
		if err != nil {
			t.Fatal(err)
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(b, &top); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range top {
			keys = append(keys, k)
		}
		if len(top) != 4 || string(top["outbox_id"]) != "42" || string(top["resends"]) != "2" || top["row"][0] != '"' {
			t.Errorf("args %s: want outbox_id, created_us, resends and a packed row string, got keys %v", b, keys)
		}
		if !strings.Contains(string(b), `9007199254740993`) {
			t.Errorf("args %s lost the big integer's digits", b)
		}
	})

	// Jobs queued by a relay from before the packing still run.
	t.Run("DecodesUnpackedArgs", func(t *testing.T) {
		t.Parallel()
		old := `{"outbox_id":42,"created_us":1764290000123456,"resends":2,"app_id":"acme","event_type":"asset.ready",` +
			`"data":{"asset_id":"a1","entity_id":"a1","big":9007199254740993,"previous_state":"processing"},` +
			`"order_seq":7,"asset_id":"a1","entity_id":"a1"}`
		var got dispatch.DeliverArgs
		if err := json.Unmarshal([]byte(old), &got); err != nil {
			t.Fatal(err)
		}
		want := full
		want.HeadOfKey = false // unknown for old jobs: the worker checks the order
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v\nwant %+v", got, want)
		}
	})
}

// TestHeadOfKey checks what is claimed: only the head of each key (a row
// behind an undelivered row of its key waits unclaimed), in jobs whose
// args are row ids only; the job that ends a row goes on with the next row
// of its key.
func TestHeadOfKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{})
	release := make(chan struct{})
	b.fake.SetInterceptor(func(r *svixfake.Request) (svixfake.Reply, bool) {
		if r.Method == http.MethodPost && r.EventType == "asset.pending_payment" {
			<-release
		}
		return svixfake.Reply{}, false
	})
	first := b.emit(t, outbox.AssetPendingPayment("acme", "asset_1"))
	second := b.emit(t, outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment))
	other := b.emit(t, outbox.AssetFailed("acme", "asset_2"))
	b.start(t)

	// The other asset's row went through while the first row is held at
	// Svix: admission has looked at all three rows.
	b.waitDelivered(t, 1)
	b.assertDeliveredOnce(t, other)
	waitFor(t, 10*time.Second, "the first row to be claimed", func() bool {
		var enqueued bool
		_ = b.pool.QueryRow(ctx, `SELECT enqueued_at IS NOT NULL FROM outbox WHERE id = $1`, first).Scan(&enqueued)
		return enqueued
	})
	var claimed bool
	if err := b.pool.QueryRow(ctx, `SELECT enqueued_at IS NOT NULL OR job_id IS NOT NULL FROM outbox WHERE id = $1`, second).Scan(&claimed); err != nil {
		t.Fatal(err)
	}
	if claimed {
		t.Errorf("row %d was claimed while the row before it in its key was in flight", second)
	}
	close(release)
	b.waitDelivered(t, 3)

	rows, err := b.pool.Query(ctx, `SELECT args FROM river_job WHERE kind = $1`, dispatch.BatchKind)
	if err != nil {
		t.Fatal(err)
	}
	inJobs := map[int64]int{}
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(raw, &top); err != nil {
			t.Fatal(err)
		}
		// Row ids, and the span of their partition_at (both ends or none).
		delete(top, "part_from_us")
		delete(top, "part_to_us")
		if len(top) != 1 || top["ids"] == nil {
			t.Errorf("batch job args %s: want row ids and their partition span only", raw)
		}
		var a dispatch.BatchArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatal(err)
		}
		for _, id := range a.IDs {
			inJobs[id]++
		}
		if a.PartitionFromUS == nil || a.PartitionToUS == nil || *a.PartitionFromUS > *a.PartitionToUS {
			t.Errorf("batch job args %s: want the rows' partition span", raw)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// The held row may have timed out and gone to a retry job of its own.
	// The row behind it was in no job's args: the job that delivered the
	// held row went on with it.
	if inJobs[first] < 1 || inJobs[second] != 0 || inJobs[other] != 1 {
		t.Errorf("jobs per row: got %v, want the held row in one or more, the row behind it in none, the other in one", inJobs)
	}
	var sameJob bool
	if err := b.pool.QueryRow(ctx, `SELECT a.job_id = b.job_id FROM outbox a, outbox b WHERE a.id = $1 AND b.id = $2`, first, second).Scan(&sameJob); err != nil {
		t.Fatal(err)
	}
	if !sameJob {
		t.Errorf("rows %d and %d of one asset were delivered by different jobs; want the first's job to go on with the second", first, second)
	}
	for _, id := range []int64{first, second, other} {
		b.assertDeliveredOnce(t, id)
	}
	if got := acceptedOrder(t, b.fake)["asset_1"]; len(got) != 2 || got[0] != "asset.pending_payment" {
		t.Errorf("svix accepted %v for asset_1, want pending_payment then ready", got)
	}
}
