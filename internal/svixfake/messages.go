package svixfake

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Validation messages and error bodies below follow the open-source Svix
// server (server/svix-server in the svix-webhooks module), so a test that
// passes here fails in the same way against Svix.

const (
	typeValue      = "value_error"
	typeJSONDecode = "value_error.jsondecode"

	detailNotFound = "Entity not found"
)

// messageIn is the body of a message create. Pointers and RawMessage tell
// a missing field from a null or empty one.
type messageIn struct {
	EventType              *string         `json:"eventType"`
	Payload                json.RawMessage `json:"payload"`
	EventID                *string         `json:"eventId"`
	Channels               []string        `json:"channels"`
	Tags                   []string        `json:"tags"`
	PayloadRetentionPeriod *int64          `json:"payloadRetentionPeriod"`
	PayloadRetentionHours  *int64          `json:"payloadRetentionHours"`
	Application            *applicationIn  `json:"application"`
}

// messageOut is MessageOut with the payload kept raw.
type messageOut struct {
	EventID   *string         `json:"eventId"`
	EventType string          `json:"eventType"`
	Payload   json.RawMessage `json:"payload"`
	Channels  []string        `json:"channels"`
	Tags      []string        `json:"tags,omitempty"`
	ID        string          `json:"id"`
	Timestamp time.Time       `json:"timestamp"`
}

func newMessageOut(m *Message, withContent bool) messageOut {
	out := messageOut{
		EventType: m.EventType,
		Payload:   json.RawMessage("{}"),
		Channels:  m.Channels,
		Tags:      m.Tags,
		ID:        m.ID,
		Timestamp: m.Timestamp,
	}
	if m.EventID != "" {
		out.EventID = &m.EventID
	}
	if withContent {
		out.Payload = m.Payload
	}
	return out
}

// withContent reads the with_content query flag (default true).
func withContent(r *http.Request) bool {
	return queryValue(r.URL.RawQuery, "with_content") != "false"
}

// queryValue returns the first value of key in a raw query without
// building a url.Values; values here are plain words, so no unescaping.
func queryValue(rawQuery, key string) string {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if k, v, _ := strings.Cut(pair, "="); k == key {
			return v
		}
	}
	return ""
}

// --- messages ---

func (s *Server) createMessage(c *call) reply {
	if c.msgErr != nil {
		return validationReply(c.msgErr)
	}
	in := c.msg
	if errs := validateMessageIn(in); len(errs) > 0 {
		return validationReply(errs)
	}
	if msg := limitedStrError(c.route.app); msg != "" {
		return validationReply([]fieldError{{Loc: []string{"path", "app_id_or_uid"}, Msg: msg, Type: typeValue}})
	}

	now := s.now().UTC().Truncate(time.Microsecond)
	m := &Message{
		ID:             newID("msg_", now),
		EventType:      *in.EventType,
		EventID:        deref(in.EventID),
		Payload:        in.Payload,
		Channels:       in.Channels,
		Tags:           in.Tags,
		Timestamp:      now,
		IdempotencyKey: c.req.IdempotencyKey,
	}

	st := &s.store
	st.mu.Lock()
	if s.cfg.MessageRetention > 0 {
		st.forgetBefore(now.Add(-s.cfg.MessageRetention))
	}
	a := st.findApp(c.route.app)
	if a == nil {
		if in.Application == nil {
			st.mu.Unlock()
			return errorReply(http.StatusNotFound, "not_found", "Application not found")
		}
		if rep, ok := checkImplicitAppUID(c.route.app, in.Application); !ok {
			st.mu.Unlock()
			return rep
		}
		a = st.addApp(newAppOut(in.Application, now))
	}
	if m.EventID != "" {
		first, dup := a.byEventID[m.EventID]
		if dup && (s.cfg.EventIDTTL <= 0 || now.Sub(first.Timestamp) < s.cfg.EventIDTTL) {
			st.mu.Unlock()
			return errorReply(http.StatusConflict, "conflict", "A conflict has occurred")
		}
		if !dup {
			a.byEventID[m.EventID] = m
		}
	}
	m.AppID, m.AppUID = a.out.Id, deref(a.out.Uid)
	a.msgs = append(a.msgs, m)
	a.byID[m.ID] = m
	st.allMsgs = append(st.allMsgs, m)
	st.msgCount++
	var targets []deliveryTarget
	if s.cfg.DevMode {
		targets = a.deliveryTargets(m)
	}
	st.mu.Unlock()

	if s.cfg.OnMessage != nil {
		s.cfg.OnMessage(*m)
	}
	s.notify.broadcast()
	if len(targets) > 0 {
		s.scheduleDeliveries(*m, targets)
	}
	rep := jsonReply(http.StatusAccepted, newMessageOut(m, withContent(c.r)))
	rep.msgID = m.ID
	return rep
}

// checkImplicitAppUID enforces the rule for creating an app alongside a
// message: application.uid must be set and equal the path value.
func checkImplicitAppUID(pathApp string, in *applicationIn) (reply, bool) {
	loc := []string{"body", "application", "uid"}
	switch {
	case in.UID == nil:
		return validationReply([]fieldError{{Loc: loc, Msg: "Application UID not set in body", Type: "application_uid_missing"}}), false
	case *in.UID != pathApp:
		return validationReply([]fieldError{{Loc: loc, Msg: "Application UID in the path and body must match", Type: "application_uid_mismatch"}}), false
	}
	return reply{}, true
}

func (s *Server) getMessage(c *call) reply {
	st := &s.store
	st.mu.Lock()
	a := st.findApp(c.route.app)
	if a == nil {
		st.mu.Unlock()
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	m, ok := a.byID[c.route.id]
	if !ok {
		m, ok = a.byEventID[c.route.id]
	}
	st.mu.Unlock()
	if !ok {
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	rep := jsonReply(http.StatusOK, newMessageOut(m, withContent(c.r)))
	rep.msgID = m.ID
	return rep
}

// listMessages answers every message of the app, newest first, in one page.
func (s *Server) listMessages(c *call) reply {
	st := &s.store
	st.mu.Lock()
	a := st.findApp(c.route.app)
	if a == nil {
		st.mu.Unlock()
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	msgs := slices.Clone(a.msgs)
	st.mu.Unlock()
	wc := withContent(c.r)
	data := make([]messageOut, 0, len(msgs))
	for i := len(msgs) - 1; i >= 0; i-- {
		data = append(data, newMessageOut(msgs[i], wc))
	}
	return jsonReply(http.StatusOK, struct {
		Data []messageOut `json:"data"`
		Done bool         `json:"done"`
	}{data, true})
}

func validateMessageIn(in *messageIn) []fieldError {
	if in.EventType == nil {
		return []fieldError{missingField("eventType")}
	}
	if len(in.Payload) == 0 {
		return []fieldError{missingField("payload")}
	}
	var errs []fieldError
	if in.EventID != nil {
		for _, msg := range uidErrors(*in.EventID, "msg_") {
			errs = append(errs, fieldError{Loc: []string{"body", "eventId"}, Msg: msg, Type: typeValue})
		}
	}
	if msg := limitedStrError(*in.EventType); msg != "" {
		errs = append(errs, fieldError{Loc: []string{"body", "eventType"}, Msg: msg, Type: typeValue})
	}
	if in.Payload[0] != '{' {
		errs = append(errs, fieldError{Loc: []string{"body", "payload"}, Msg: "Payload must be an object.", Type: typeValue})
	}
	if in.Channels != nil {
		errs = append(errs, channelErrors(in.Channels, 5, "Channels must have at least 1 and at most 5 items, or be set to null.")...)
	}
	if p := in.PayloadRetentionPeriod; p != nil && (*p < 5 || *p > 90) {
		errs = append(errs, fieldError{Loc: []string{"body", "payloadRetentionPeriod"}, Msg: "Payload retention period must be between 5 and 90 days", Type: typeValue})
	}
	if in.Application != nil {
		errs = append(errs, validateApplicationIn(in.Application, []string{"body", "application"})...)
	}
	return errs
}
