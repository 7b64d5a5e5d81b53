package dispatch

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/svix/svix-webhooks/go/models"
)

// collision tells Svix's answer for this row's key apart from another
// row's message: a create's answer (the client puts back the payload it
// sent) and a message looked up after a 409 (decoded from Svix's JSON).
func TestCollision(t *testing.T) {
	msg := Message{AppID: "acct-1", EventType: "asset.ready", Key: "k",
		Data: []byte(` {"asset_id": "a-1", "entity_id": "a-1", "previous_state": "processing"}`)}
	sent, err := payloadOf(msg)
	if err != nil {
		t.Fatal(err)
	}
	decoded := func(data string) map[string]any {
		var m map[string]any
		if err := json.Unmarshal([]byte(`{"type": "x", "data": `+data+`}`), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		name string
		out  *models.MessageOut
		want bool // a collision
	}{
		{"no answer", nil, false},
		{"create answer, same type", &models.MessageOut{Id: "m1", EventType: "asset.ready", Payload: sent}, false},
		{"create answer replayed for another type", &models.MessageOut{Id: "m1", EventType: "cut.failed", Payload: sent}, true},
		{"looked up, same event", &models.MessageOut{Id: "m1", EventType: "asset.ready", Payload: decoded(`{"asset_id": "a-1", "entity_id": "a-1"}`)}, false},
		{"looked up, another entity", &models.MessageOut{Id: "m1", EventType: "asset.ready", Payload: decoded(`{"asset_id": "a-1", "entity_id": "r-9"}`)}, true},
		{"looked up, another asset", &models.MessageOut{Id: "m1", EventType: "asset.ready", Payload: decoded(`{"asset_id": "a-2", "entity_id": "a-1"}`)}, true},
		{"looked up, another type", &models.MessageOut{Id: "m1", EventType: "asset.failed", Payload: decoded(`{"asset_id": "a-1", "entity_id": "a-1"}`)}, true},
		{"looked up, no data to compare", &models.MessageOut{Id: "m1", EventType: "asset.ready", Payload: map[string]any{"type": "x"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := collision(msg, tc.out)
			var perm *PermanentError
			switch {
			case tc.want && (!errors.As(err, &perm) || perm.Code != "key_collision"):
				t.Errorf("collision = %v, want a key_collision", err)
			case !tc.want && err != nil:
				t.Errorf("collision = %v, want none", err)
			}
		})
	}
}
