package svixfake

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/svix/svix-webhooks/go/models"
)

type eventTypeIn struct {
	Name         *string         `json:"name"`
	Description  *string         `json:"description"`
	Archived     *bool           `json:"archived"`
	Deprecated   *bool           `json:"deprecated"`
	FeatureFlags []string        `json:"featureFlags"`
	GroupName    *string         `json:"groupName"`
	Schemas      *map[string]any `json:"schemas"`
}

func (s *Server) createEventType(c *call) reply {
	var in eventTypeIn
	if err := json.Unmarshal(c.req.Body, &in); err != nil {
		return validationReply(decodeError(err))
	}
	switch {
	case in.Name == nil:
		return validationReply([]fieldError{missingField("name")})
	case in.Description == nil:
		return validationReply([]fieldError{missingField("description")})
	}
	if msg := limitedStrError(*in.Name); msg != "" {
		return validationReply([]fieldError{{Loc: []string{"body", "name"}, Msg: msg, Type: typeValue}})
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	out := &models.EventTypeOut{
		Archived:     in.Archived,
		CreatedAt:    now,
		UpdatedAt:    now,
		Deprecated:   in.Deprecated != nil && *in.Deprecated,
		Description:  *in.Description,
		FeatureFlags: in.FeatureFlags,
		GroupName:    in.GroupName,
		Name:         *in.Name,
		Schemas:      in.Schemas,
	}
	st := &s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, ok := st.eventTypes[out.Name]; ok {
		return errorReply(http.StatusConflict, "event_type_exists", "An event_type with this name already exists")
	}
	st.eventTypes[out.Name] = out
	return jsonReply(http.StatusCreated, out)
}

func (s *Server) getEventType(c *call) reply {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	et, ok := s.store.eventTypes[c.route.id]
	if !ok {
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	return jsonReply(http.StatusOK, et)
}

func (s *Server) listEventTypes(*call) reply {
	return jsonReply(http.StatusOK, models.ListResponseEventTypeOut{Data: s.EventTypes(), Done: true})
}
