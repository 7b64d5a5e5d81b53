package svixfake

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
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

type applicationIn struct {
	Name         *string           `json:"name"`
	UID          *string           `json:"uid"`
	Metadata     map[string]string `json:"metadata"`
	RateLimit    *uint16           `json:"rateLimit"`
	ThrottleRate *uint16           `json:"throttleRate"`
}

type eventTypeIn struct {
	Name         *string         `json:"name"`
	Description  *string         `json:"description"`
	Archived     *bool           `json:"archived"`
	Deprecated   *bool           `json:"deprecated"`
	FeatureFlags []string        `json:"featureFlags"`
	GroupName    *string         `json:"groupName"`
	Schemas      *map[string]any `json:"schemas"`
}

type endpointIn struct {
	URL          *string           `json:"url"`
	FilterTypes  []string          `json:"filterTypes"`
	EventTypes   []string          `json:"eventTypes"` // the server's own name; filterTypes is its alias
	Channels     []string          `json:"channels"`
	UID          *string           `json:"uid"`
	Secret       *string           `json:"secret"`
	Description  *string           `json:"description"`
	Disabled     *bool             `json:"disabled"`
	Version      *int32            `json:"version"`
	Metadata     map[string]string `json:"metadata"`
	RateLimit    *uint16           `json:"rateLimit"`
	ThrottleRate *uint16           `json:"throttleRate"`
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

// --- applications ---

func (s *Server) createApp(c *call) reply {
	var in applicationIn
	if err := json.Unmarshal(c.req.Body, &in); err != nil {
		return validationReply(decodeError(err))
	}
	if errs := validateApplicationIn(&in, []string{"body"}); len(errs) > 0 {
		return validationReply(errs)
	}
	getIfExists := queryValue(c.r.URL.RawQuery, "get_if_exists") == "true"
	now := s.now().UTC().Truncate(time.Microsecond)

	st := &s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	if in.UID != nil {
		if a := st.findApp(*in.UID); a != nil {
			if getIfExists {
				return jsonReply(http.StatusOK, a.out)
			}
			return errorReply(http.StatusConflict, "conflict", "An application with that id or uid already exists")
		}
	}
	a := st.addApp(newAppOut(&in, now))
	return jsonReply(http.StatusCreated, a.out)
}

func newAppOut(in *applicationIn, now time.Time) models.ApplicationOut {
	meta := in.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	rate := in.ThrottleRate
	if rate == nil {
		rate = in.RateLimit
	}
	return models.ApplicationOut{
		CreatedAt:    now,
		UpdatedAt:    now,
		Id:           newID("app_", now),
		Metadata:     meta,
		Name:         deref(in.Name),
		Uid:          in.UID,
		ThrottleRate: rate,
		RateLimit:    rate,
	}
}

func (s *Server) getApp(c *call) reply {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	a := s.store.findApp(c.route.app)
	if a == nil {
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	return jsonReply(http.StatusOK, a.out)
}

func (s *Server) listApps(*call) reply {
	return jsonReply(http.StatusOK, models.ListResponseApplicationOut{Data: s.Apps(), Done: true})
}

func validateApplicationIn(in *applicationIn, loc []string) []fieldError {
	if in.Name == nil {
		return []fieldError{{Loc: loc, Msg: "missing field `name`", Type: typeJSONDecode}}
	}
	at := func(field string) []string { return append(slices.Clone(loc), field) }
	var errs []fieldError
	switch {
	case *in.Name == "":
		errs = append(errs, fieldError{Loc: at("name"), Msg: "Application names must be at least one character", Type: typeValue})
	case hasLowControlChars(*in.Name):
		errs = append(errs, fieldError{Loc: at("name"), Msg: "Control characters 0x00-0x08 not allowed.", Type: typeValue})
	}
	if in.UID != nil {
		for _, msg := range uidErrors(*in.UID, "app_") {
			errs = append(errs, fieldError{Loc: at("uid"), Msg: msg, Type: typeValue})
		}
	}
	if in.ThrottleRate != nil && *in.ThrottleRate == 0 {
		errs = append(errs, fieldError{Loc: at("throttleRate"), Msg: "Application throttle rate must be at least 1 if set", Type: typeValue})
	}
	return errs
}

// --- event types ---

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

// --- endpoints ---

func (s *Server) createEndpoint(c *call) reply {
	// The app is resolved before the body is read, as on the server.
	if !s.appExists(c.route.app) {
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	var in endpointIn
	if err := json.Unmarshal(c.req.Body, &in); err != nil {
		return validationReply(decodeError(err))
	}
	filterTypes := in.FilterTypes
	if filterTypes == nil {
		filterTypes = in.EventTypes
	}
	if errs := validateEndpointIn(&in, filterTypes); len(errs) > 0 {
		return validationReply(errs)
	}
	secret := deref(in.Secret)
	if secret == "" {
		var err error
		if secret, err = newEndpointSecret(); err != nil {
			return errorReply(http.StatusInternalServerError, "server_error", "Internal Server Error")
		}
	}
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		// validateEndpointIn accepted it, so this is a bug in the fake.
		return errorReply(http.StatusInternalServerError, "server_error", "Internal Server Error")
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	meta := in.Metadata
	if meta == nil {
		meta = map[string]string{}
	}
	version := int32(1)
	if in.Version != nil {
		version = *in.Version
	}
	disabled := in.Disabled != nil && *in.Disabled
	rate := in.ThrottleRate
	if rate == nil {
		rate = in.RateLimit
	}
	ep := &endpoint{
		secret: secret,
		wh:     wh,
		out: models.EndpointOut{
			Channels:     in.Channels,
			CreatedAt:    now,
			UpdatedAt:    now,
			Description:  deref(in.Description),
			Disabled:     &disabled,
			FilterTypes:  dedupe(filterTypes),
			Id:           newID("ep_", now),
			Metadata:     meta,
			Uid:          in.UID,
			Url:          *in.URL,
			Version:      version,
			ThrottleRate: rate,
			RateLimit:    rate,
		},
	}

	st := &s.store
	st.mu.Lock()
	defer st.mu.Unlock()
	var missing []string
	for _, name := range ep.out.FilterTypes {
		if _, ok := st.eventTypes[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return validationReply([]fieldError{{
			Loc:  []string{"body", "eventTypes"},
			Msg:  "The following event types don't exist: " + strings.Join(missing, ", "),
			Type: typeValue,
		}})
	}
	a := st.findApp(c.route.app)
	if in.UID != nil {
		if _, dup := a.findEndpoint(*in.UID); dup != nil {
			return errorReply(http.StatusConflict, "conflict", "A conflict has occurred")
		}
	}
	a.endpoints = append(a.endpoints, ep)
	return jsonReply(http.StatusCreated, ep.out)
}

func (s *Server) appExists(app string) bool {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	return s.store.findApp(app) != nil
}

func validateEndpointIn(in *endpointIn, filterTypes []string) []fieldError {
	if in.URL == nil {
		return []fieldError{missingField("url")}
	}
	u, err := url.Parse(*in.URL)
	switch {
	case err != nil:
		return []fieldError{{Loc: []string{"body", "url"}, Msg: err.Error(), Type: typeJSONDecode}}
	case !u.IsAbs() || u.Host == "":
		return []fieldError{{Loc: []string{"body", "url"}, Msg: "relative URL without a base", Type: typeJSONDecode}}
	}
	var errs []fieldError
	if u.Scheme != "http" && u.Scheme != "https" {
		errs = append(errs, fieldError{Loc: []string{"body", "url"}, Msg: "Endpoint URL schemes must be http or https", Type: typeValue})
	}
	if in.Secret != nil {
		errs = append(errs, secretErrors(*in.Secret)...)
	}
	if filterTypes != nil {
		if len(filterTypes) == 0 {
			errs = append(errs, fieldError{Loc: []string{"body", "eventTypes"}, Msg: "eventTypes can't be empty, it must have at least one item.", Type: typeValue})
		}
		for _, name := range filterTypes {
			if msg := limitedStrError(name); msg != "" {
				errs = append(errs, fieldError{Loc: []string{"body", "eventTypes"}, Msg: msg, Type: typeValue})
			}
		}
	}
	if in.Channels != nil {
		errs = append(errs, channelErrors(in.Channels, 10, "Channels must have at least 1 and at most 10 items, or be set to null.")...)
	}
	if in.UID != nil {
		for _, msg := range uidErrors(*in.UID, "ep_") {
			errs = append(errs, fieldError{Loc: []string{"body", "uid"}, Msg: msg, Type: typeValue})
		}
	}
	if in.Version != nil && *in.Version < 1 {
		errs = append(errs, fieldError{Loc: []string{"body", "version"}, Msg: "Endpoint versions must be at least one if set", Type: typeValue})
	}
	return errs
}

// secretErrors checks an endpoint secret: "whsec_" + base64 of 24 to 75
// bytes. Messages never include the secret.
func secretErrors(secret string) []fieldError {
	loc := []string{"body", "secret"}
	b64, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return []fieldError{{Loc: loc, Msg: "invalid prefix", Type: typeJSONDecode}}
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return []fieldError{{Loc: loc, Msg: "secret is not valid base64", Type: typeJSONDecode}}
	}
	if len(key) < 24 || len(key) > 75 {
		return []fieldError{{Loc: loc, Msg: "secret length invalid", Type: typeValue}}
	}
	return nil
}

func (s *Server) listEndpoints(c *call) reply {
	if !s.appExists(c.route.app) {
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	return jsonReply(http.StatusOK, models.ListResponseEndpointOut{Data: s.Endpoints(c.route.app), Done: true})
}

// withEndpoint runs fn on the endpoint named by the route, or answers 404.
func (s *Server) withEndpoint(c *call, fn func(a *app, i int, ep *endpoint) reply) reply {
	s.store.mu.Lock()
	defer s.store.mu.Unlock()
	a := s.store.findApp(c.route.app)
	if a == nil {
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	i, ep := a.findEndpoint(c.route.id)
	if ep == nil {
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	return fn(a, i, ep)
}

func (s *Server) getEndpoint(c *call) reply {
	return s.withEndpoint(c, func(_ *app, _ int, ep *endpoint) reply {
		return jsonReply(http.StatusOK, ep.out)
	})
}

func (s *Server) deleteEndpoint(c *call) reply {
	return s.withEndpoint(c, func(a *app, i int, _ *endpoint) reply {
		a.endpoints = slices.Delete(a.endpoints, i, i+1)
		return reply{status: http.StatusNoContent}
	})
}

func (s *Server) getEndpointSecret(c *call) reply {
	return s.withEndpoint(c, func(_ *app, _ int, ep *endpoint) reply {
		return jsonReply(http.StatusOK, models.EndpointSecretOut{Key: ep.secret})
	})
}

// --- validation helpers ---

// limitedStrError applies the server's rule for uids, event type names and
// channels: 1 to 256 characters of [a-zA-Z0-9-_.]. "" means valid.
func limitedStrError(s string) string {
	switch {
	case s == "":
		return "String must be at least one character"
	case len(s) > 256:
		return "String too long"
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		ok := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.'
		if !ok {
			return `String must match the following pattern: [a-zA-Z0-9\-_.].`
		}
	}
	return ""
}

// uidErrors validates a uid (or eventId): a limited string that does not
// start with the id prefix of its kind.
func uidErrors(s, idPrefix string) []string {
	var msgs []string
	if msg := limitedStrError(s); msg != "" {
		msgs = append(msgs, msg)
	}
	if strings.HasPrefix(s, idPrefix) {
		msgs = append(msgs, "Uids are not allowed to have the same prefix as the ID. Prefix with _?")
	}
	return msgs
}

func channelErrors(channels []string, maxItems int, countMsg string) []fieldError {
	loc := []string{"body", "channels"}
	if len(channels) < 1 || len(channels) > maxItems {
		return []fieldError{{Loc: loc, Msg: countMsg, Type: typeValue}}
	}
	var errs []fieldError
	for _, ch := range channels {
		if msg := limitedStrError(ch); msg != "" {
			errs = append(errs, fieldError{Loc: loc, Msg: msg, Type: typeValue})
		}
	}
	return errs
}

func hasLowControlChars(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r <= 0x08 })
}

func missingField(name string) fieldError {
	return fieldError{Loc: []string{"body"}, Msg: "missing field `" + name + "`", Type: typeJSONDecode}
}

func decodeMessageIn(body []byte) (*messageIn, []fieldError) {
	var in messageIn
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, decodeError(err)
	}
	return &in, nil
}

// decodeError turns a JSON decoding error into the server's 422 item.
func decodeError(err error) []fieldError {
	loc := []string{"body"}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		loc = append(loc, strings.Split(te.Field, ".")...)
	}
	return []fieldError{{Loc: loc, Msg: err.Error(), Type: typeJSONDecode}}
}

func dedupe(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, 0, len(in))
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}
