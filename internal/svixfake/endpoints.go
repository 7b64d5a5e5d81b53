package svixfake

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
)

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

// Endpoint list paging, as on the server: limit defaults to 50 and may
// not exceed 250; items come newest first (descending id) unless
// order=ascending; iterator is the last id of the previous page.
const (
	defaultListLimit = 50
	maxListLimit     = 250
)

// listEndpoints answers one page of the app's endpoints, ordered by id,
// with iterator (the page's last id), prevIterator ("-" + its first id)
// and done.
func (s *Server) listEndpoints(c *call) reply {
	q := c.r.URL.Query()
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n < 0:
			return validationReply([]fieldError{{Loc: []string{"query", "limit"}, Msg: "invalid digit found in string", Type: typeValue}})
		case n > maxListLimit:
			return validationReply([]fieldError{{Loc: []string{"query", "limit"}, Msg: "Given limit must not exceed 250", Type: typeValue}})
		}
		limit = max(n, 1)
	}
	ascending := q.Get("order") == "ascending"
	iterator := q.Get("iterator")

	s.store.mu.Lock()
	a := s.store.findApp(c.route.app)
	if a == nil {
		s.store.mu.Unlock()
		return errorReply(http.StatusNotFound, "not_found", detailNotFound)
	}
	all := make([]models.EndpointOut, len(a.endpoints))
	for i, ep := range a.endpoints {
		all[i] = ep.out
	}
	s.store.mu.Unlock()

	slices.SortFunc(all, func(x, y models.EndpointOut) int {
		if ascending {
			return strings.Compare(x.Id, y.Id)
		}
		return strings.Compare(y.Id, x.Id)
	})
	if iterator != "" {
		all = slices.DeleteFunc(all, func(ep models.EndpointOut) bool {
			if ascending {
				return ep.Id <= iterator
			}
			return ep.Id >= iterator
		})
	}
	out := models.ListResponseEndpointOut{Data: all, Done: len(all) <= limit}
	if len(all) > limit {
		out.Data = all[:limit]
	}
	if n := len(out.Data); n > 0 {
		last, prev := out.Data[n-1].Id, "-"+out.Data[0].Id
		out.Iterator, out.PrevIterator = &last, &prev
	}
	if out.Data == nil {
		out.Data = []models.EndpointOut{}
	}
	return jsonReply(http.StatusOK, out)
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

// endpointSecretRotateIn is the body of a secret rotation.
type endpointSecretRotateIn struct {
	Key                *string `json:"key"`
	GracePeriodSeconds *uint32 `json:"gracePeriodSeconds"`
}

// maxGracePeriod is the longest grace period the server accepts (7 days);
// the default is 24 hours.
const (
	defaultGracePeriod = 24 * time.Hour
	maxGracePeriod     = 7 * 24 * time.Hour
)

// rotateEndpointSecret replaces the endpoint's secret (204). The old
// secret is kept, with its expiry, in oldSecrets: like the server, dev
// deliveries are signed with it too during the grace period (24 hours by
// default), so a receiver holding either secret verifies them.
func (s *Server) rotateEndpointSecret(c *call) reply {
	var in endpointSecretRotateIn
	if len(c.req.Body) > 0 {
		if err := json.Unmarshal(c.req.Body, &in); err != nil {
			return validationReply(decodeError(err))
		}
	}
	grace := defaultGracePeriod
	if in.GracePeriodSeconds != nil {
		grace = time.Duration(*in.GracePeriodSeconds) * time.Second
		if grace > maxGracePeriod {
			return validationReply([]fieldError{{Loc: []string{"body", "gracePeriodSeconds"}, Msg: "Grace period must be at most 7 days", Type: typeValue}})
		}
	}
	secret := deref(in.Key)
	if secret != "" {
		if errs := secretErrors(secret); len(errs) > 0 {
			return validationReply(errs)
		}
	} else {
		var err error
		if secret, err = newEndpointSecret(); err != nil {
			return errorReply(http.StatusInternalServerError, "server_error", "Internal Server Error")
		}
	}
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return errorReply(http.StatusInternalServerError, "server_error", "Internal Server Error")
	}
	now := s.now()
	expires := now.Add(grace)
	return s.withEndpoint(c, func(_ *app, _ int, ep *endpoint) reply {
		ep.oldSecrets = slices.DeleteFunc(ep.oldSecrets, func(o expiringSecret) bool { return !now.Before(o.expires) })
		ep.oldSecrets = append(ep.oldSecrets, expiringSecret{secret: ep.secret, wh: ep.wh, expires: expires})
		ep.secret, ep.wh = secret, wh
		ep.out.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
		return reply{status: http.StatusNoContent}
	})
}
