package dispatch_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/mediaplatform/relay/dispatch"
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

// TestHeadOfKey checks the flag the feeder sets at claim time: a row with
// no undelivered earlier row of its key is sent without another check; a
// row behind one is not.
func TestHeadOfKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{})
	first := b.emit(t, outbox.AssetPendingPayment("acme", "asset_1"))
	second := b.emit(t, outbox.AssetReady("acme", "asset_1", outbox.PreviousStatePendingPayment))
	other := b.emit(t, outbox.AssetFailed("acme", "asset_2"))
	b.start(t)
	b.waitDelivered(t, 3)

	head := map[int64]bool{}
	rows, err := b.pool.Query(ctx, `SELECT args FROM river_job WHERE kind = $1`, dispatch.DeliverKind)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var a dispatch.DeliverArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatal(err)
		}
		head[a.OutboxID] = a.HeadOfKey
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[int64]bool{first: true, second: false, other: true}
	if !reflect.DeepEqual(head, want) {
		t.Errorf("head of key by outbox id: got %v, want %v", head, want)
	}
	for _, id := range []int64{first, second, other} {
		b.assertDeliveredOnce(t, id)
	}
	if got := acceptedOrder(t, b.fake)["asset_1"]; len(got) != 2 || got[0] != "asset.pending_payment" {
		t.Errorf("svix accepted %v for asset_1, want pending_payment then ready", got)
	}
}
