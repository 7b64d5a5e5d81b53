package outbox

import (
	"encoding/json"
	"fmt"
)

// EventType names a kind of webhook. The catalog lives in the database
// (table outbox_event_type); these are the types it ships with.
type EventType string

// The event types customers subscribe to.
const (
	TypeCutCompleted        EventType = "cut.completed"
	TypeCutFailed           EventType = "cut.failed"
	TypeRenderCompleted     EventType = "render.completed"
	TypeRenderFailed        EventType = "render.failed"
	TypeRenderCancelled     EventType = "render.cancelled"
	TypeAssetReady          EventType = "asset.ready"
	TypeAssetPendingPayment EventType = "asset.pending_payment"
	TypeAssetFailed         EventType = "asset.failed"
)

// EventTypes lists the catalog in name order, as the database lists it in
// its errors.
var EventTypes = []EventType{
	TypeAssetFailed, TypeAssetPendingPayment, TypeAssetReady,
	TypeCutCompleted, TypeCutFailed,
	TypeRenderCancelled, TypeRenderCompleted, TypeRenderFailed,
}

// PreviousState is the state an asset left when it became ready.
type PreviousState string

// The states asset.ready may come from.
const (
	PreviousStateProcessing     PreviousState = "processing"
	PreviousStatePendingPayment PreviousState = "pending_payment"
)

// previousStates maps event types that carry data.previous_state to the
// values it may take (the catalog's previous_states column).
var previousStates = map[EventType][]PreviousState{
	TypeAssetReady: {PreviousStateProcessing, PreviousStatePendingPayment},
}

// Event is one row for the outbox: the Svix application uid of the customer
// account (AppID), the event type, and its data, a JSON object with at least
// non-empty string "entity_id" and "asset_id" fields. Extra keys are allowed
// and delivered unchanged.
type Event struct {
	AppID string
	Type  EventType
	Data  json.RawMessage
}

// Data is the common shape of an event's data.
type Data struct {
	EntityID      string        `json:"entity_id"`
	AssetID       string        `json:"asset_id"`
	PreviousState PreviousState `json:"previous_state,omitempty"`
}

// NewEvent builds an event whose data is data marshalled to JSON (a Data, a
// struct embedding one, or a map with extra keys).
func NewEvent(appID string, typ EventType, data any) (Event, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Event{}, fmt.Errorf("marshal %s data: %w", typ, err)
	}
	return Event{AppID: appID, Type: typ, Data: raw}, nil
}

func event(appID string, typ EventType, d Data) Event {
	raw, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("outbox: marshal Data: %v", err)) // strings only: cannot fail
	}
	return Event{AppID: appID, Type: typ, Data: raw}
}

// CutCompleted announces that cut cutID of asset assetID finished.
func CutCompleted(appID, cutID, assetID string) Event {
	return event(appID, TypeCutCompleted, Data{EntityID: cutID, AssetID: assetID})
}

// CutFailed announces that cut cutID of asset assetID failed.
func CutFailed(appID, cutID, assetID string) Event {
	return event(appID, TypeCutFailed, Data{EntityID: cutID, AssetID: assetID})
}

// RenderCompleted announces that render renderID of asset assetID finished.
func RenderCompleted(appID, renderID, assetID string) Event {
	return event(appID, TypeRenderCompleted, Data{EntityID: renderID, AssetID: assetID})
}

// RenderFailed announces that render renderID of asset assetID failed.
func RenderFailed(appID, renderID, assetID string) Event {
	return event(appID, TypeRenderFailed, Data{EntityID: renderID, AssetID: assetID})
}

// RenderCancelled announces that render renderID of asset assetID was
// cancelled.
func RenderCancelled(appID, renderID, assetID string) Event {
	return event(appID, TypeRenderCancelled, Data{EntityID: renderID, AssetID: assetID})
}

// AssetReady announces that asset assetID is ready, coming from prev.
func AssetReady(appID, assetID string, prev PreviousState) Event {
	return event(appID, TypeAssetReady, Data{EntityID: assetID, AssetID: assetID, PreviousState: prev})
}

// AssetPendingPayment announces that asset assetID waits for payment.
func AssetPendingPayment(appID, assetID string) Event {
	return event(appID, TypeAssetPendingPayment, Data{EntityID: assetID, AssetID: assetID})
}

// AssetFailed announces that asset assetID could not be ingested.
func AssetFailed(appID, assetID string) Event {
	return event(appID, TypeAssetFailed, Data{EntityID: assetID, AssetID: assetID})
}
