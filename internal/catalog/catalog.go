// Package catalog describes the outbox's event types to Svix. The database's
// catalog (table outbox_event_type, which the outbox trigger validates
// against) is the one source: each type's name and description come from it,
// and the JSON Schema of its webhook payload is derived from the same rules
// the trigger enforces (entity_id and asset_id non-empty strings,
// previous_state one of the type's previous_states). Registering them in
// Svix (Sync) lets customers pick them, with their schemas, in Svix's
// portal.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"
	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/outbox"
)

// listSQL reads the catalog.
const listSQL = `
SELECT name, description, coalesce(previous_states, '{}')
  FROM outbox_event_type
 ORDER BY name`

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// EventType is one entry of the catalog.
type EventType struct {
	Name        string
	Description string
	// PreviousStates, when not empty, are the values data.previous_state
	// must take.
	PreviousStates []string
}

// Load reads the catalog from the database, by name.
func Load(ctx context.Context, db Querier) ([]EventType, error) {
	rows, err := db.Query(ctx, listSQL)
	if err != nil {
		return nil, fmt.Errorf("read event catalog: %w", err)
	}
	types, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EventType, error) {
		var t EventType
		err := r.Scan(&t.Name, &t.Description, &t.PreviousStates)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read event catalog: %w", err)
	}
	return types, nil
}

// Group is the type's subject, the part before the first dot ("asset" for
// asset.ready): Svix's portal groups types by it.
func (t EventType) Group() string {
	group, _, _ := strings.Cut(t.Name, ".")
	return group
}

// SchemaVersion is the version under which Schema is registered in Svix.
const SchemaVersion = "1"

// Schema is the JSON Schema (draft 7) of the type's webhook payload,
// {"type": name, "data": {...}}, with an example.
func (t EventType) Schema() map[string]any {
	group := t.Group()
	entity := "Id of the " + group + " the event is about."
	if group == "asset" {
		entity = "Id of the asset the event is about (equal to asset_id)."
	}
	props := map[string]any{
		"entity_id": map[string]any{"type": "string", "minLength": 1, "maxLength": outbox.MaxIDLength, "description": entity},
		"asset_id":  map[string]any{"type": "string", "minLength": 1, "maxLength": outbox.MaxIDLength, "description": "Id of the asset."},
	}
	required := []any{"entity_id", "asset_id"}
	example := map[string]any{"entity_id": group + "_123", "asset_id": "asset_456"}
	if group == "asset" {
		example["entity_id"] = "asset_456"
	}
	if len(t.PreviousStates) > 0 {
		enum := make([]any, len(t.PreviousStates))
		for i, s := range t.PreviousStates {
			enum[i] = s
		}
		props["previous_state"] = map[string]any{"type": "string", "enum": enum, "description": "The state the asset left."}
		required = append(required, "previous_state")
		example["previous_state"] = t.PreviousStates[0]
	}
	return map[string]any{
		"$schema":     "http://json-schema.org/draft-07/schema#",
		"title":       t.Name,
		"description": t.Description,
		"type":        "object",
		"properties": map[string]any{
			"type": map[string]any{"type": "string", "const": t.Name, "description": "The event type."},
			"data": map[string]any{
				"type":                 "object",
				"description":          "The event's data. Keys beyond these may be added over time: ignore unknown keys.",
				"properties":           props,
				"required":             required,
				"additionalProperties": true,
			},
		},
		"required":             []any{"type", "data"},
		"additionalProperties": false,
		"examples":             []any{map[string]any{"type": t.Name, "data": example}},
	}
}

// In is the type as Svix's API takes it.
func (t EventType) In() models.EventTypeIn {
	group := t.Group()
	schemas := map[string]any{SchemaVersion: t.Schema()}
	return models.EventTypeIn{Name: t.Name, Description: t.Description, GroupName: &group, Schemas: &schemas}
}

// Outcome is what Sync did with one type.
type Outcome string

const (
	Created Outcome = "created"
	Exists  Outcome = "exists" // already registered (409 event_type_exists): left as it is
)

// Sync registers each type in Svix, calling each with the outcome. A type
// Svix already has is fine (409 event_type_exists) and is left unchanged.
// It stops at the first other error.
func Sync(ctx context.Context, client *svix.Svix, types []EventType, each func(EventType, Outcome)) error {
	for _, t := range types {
		_, err := client.EventType.Create(ctx, t.In(), nil)
		var se *svix.Error
		switch {
		case err == nil:
			each(t, Created)
		case errors.As(err, &se) && se.Status() == http.StatusConflict:
			each(t, Exists)
		case errors.As(err, &se):
			return fmt.Errorf("register event type %s in svix: status %d: %s: %w", t.Name, se.Status(), strings.TrimSpace(string(se.Body())), err)
		default:
			return fmt.Errorf("register event type %s in svix: %w", t.Name, err)
		}
	}
	return nil
}
