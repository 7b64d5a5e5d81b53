package svixfake

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/svix/svix-webhooks/go/models"
)

type applicationIn struct {
	Name         *string           `json:"name"`
	UID          *string           `json:"uid"`
	Metadata     map[string]string `json:"metadata"`
	RateLimit    *uint16           `json:"rateLimit"`
	ThrottleRate *uint16           `json:"throttleRate"`
}

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
