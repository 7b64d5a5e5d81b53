package endpoints

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mediaplatform/relay/internal/httpapi"
)

// MaxDescriptionLength bounds an endpoint's description.
const MaxDescriptionLength = 512

// createBody is the create request as decoded: pointers and raw values
// tell a missing field from a null or a wrong type, so each is refused
// naming the field (and the index in event_types).
type createBody struct {
	URL         *string         `json:"url"`
	EventTypes  json.RawMessage `json:"event_types"`
	Description *string         `json:"description"`
}

// validateCreate checks the body against the rules and the catalog and
// returns the request to send; the first fault is answered 422 naming its
// field.
func validateCreate(in createBody, catalog []string, allowInsecure bool) (CreateRequest, error) {
	if in.URL == nil {
		return CreateRequest{}, httpapi.Invalid(http.StatusUnprocessableEntity, "missing_field", "url", "url is required: the https URL to deliver webhooks to.")
	}
	u, bad := checkURL(*in.URL, allowInsecure)
	if bad != nil {
		return CreateRequest{}, bad
	}
	types, err := validateEventTypes(in.EventTypes, catalog)
	if err != nil {
		return CreateRequest{}, err
	}
	req := CreateRequest{URL: u, EventTypes: types}
	if in.Description != nil {
		d := *in.Description
		switch {
		case utf8.RuneCountInString(d) > MaxDescriptionLength:
			return CreateRequest{}, httpapi.Invalid(http.StatusUnprocessableEntity, "invalid_description", "description",
				"description must be at most %d characters, got %d.", MaxDescriptionLength, utf8.RuneCountInString(d))
		case strings.ContainsFunc(d, func(r rune) bool { return r < ' ' && r != '\t' }):
			return CreateRequest{}, httpapi.Invalid(http.StatusUnprocessableEntity, "invalid_description", "description",
				"description must not contain control characters.")
		}
		req.Description = d
	}
	return req, nil
}

func validateEventTypes(raw json.RawMessage, catalog []string) ([]string, error) {
	invalid := func(param, format string, args ...any) error {
		return httpapi.Invalid(http.StatusUnprocessableEntity, "invalid_event_types", param, format, args...)
	}
	if len(raw) == 0 {
		return nil, httpapi.Invalid(http.StatusUnprocessableEntity, "missing_field", "event_types",
			"event_types is required: a non-empty array of event types, from %s.", strings.Join(catalog, ", "))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return nil, invalid("event_types", "event_types must be an array of event type names.")
	}
	if len(items) == 0 {
		return nil, invalid("event_types", "event_types must not be empty: name at least one of %s.", strings.Join(catalog, ", "))
	}
	if len(items) > len(catalog) {
		return nil, invalid("event_types", "event_types has %d items; there are only %d event types.", len(items), len(catalog))
	}
	types := make([]string, len(items))
	for i, item := range items {
		param := fmt.Sprintf("event_types[%d]", i)
		var name string
		if err := json.Unmarshal(item, &name); err != nil {
			return nil, invalid(param, "%s must be a string, got %s.", param, truncate(string(item), 40))
		}
		if !slices.Contains(catalog, name) {
			return nil, invalid(param, "%s is %q, which is not an event type; the event types are %s.", param, truncate(name, 64), strings.Join(catalog, ", "))
		}
		if slices.Contains(types[:i], name) {
			return nil, invalid(param, "%s repeats %q.", param, name)
		}
		types[i] = name
	}
	return types, nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "..."
}
