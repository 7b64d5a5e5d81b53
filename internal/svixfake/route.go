package svixfake

import (
	"net/http"
	"strings"
)

type routeKind int

const (
	routeUnknown              routeKind = iota
	routeHealth                         // /api/v1/health, /api/v1/health/ping
	routeApps                           // /api/v1/app
	routeApp                            // /api/v1/app/{app}
	routeMsgs                           // /api/v1/app/{app}/msg
	routeMsg                            // /api/v1/app/{app}/msg/{id}
	routeEndpoints                      // /api/v1/app/{app}/endpoint
	routeEndpoint                       // /api/v1/app/{app}/endpoint/{id}
	routeEndpointSecret                 // /api/v1/app/{app}/endpoint/{id}/secret
	routeEndpointSecretRotate           // /api/v1/app/{app}/endpoint/{id}/secret/rotate
	routeEventTypes                     // /api/v1/event-type
	routeEventType                      // /api/v1/event-type/{name}
)

type route struct {
	kind routeKind
	app  string // {app_id}
	id   string // {msg_id}, {endpoint_id} or {event_type_name}
}

// parseRoute maps a request path onto the routes the fake serves. Paths are
// matched exactly: "//api/v1/..." (a client ServerUrl with a trailing
// slash) is unknown, as on the real service.
func parseRoute(path string) route {
	rest, ok := strings.CutPrefix(path, "/api/v1/")
	if !ok {
		return route{}
	}
	seg := strings.Split(rest, "/")
	for _, s := range seg {
		if s == "" {
			return route{}
		}
	}
	switch seg[0] {
	case "health":
		if len(seg) == 1 || (len(seg) == 2 && seg[1] == "ping") {
			return route{kind: routeHealth}
		}
	case "event-type":
		switch len(seg) {
		case 1:
			return route{kind: routeEventTypes}
		case 2:
			return route{kind: routeEventType, id: seg[1]}
		}
	case "app":
		switch len(seg) {
		case 1:
			return route{kind: routeApps}
		case 2:
			return route{kind: routeApp, app: seg[1]}
		case 3:
			switch seg[2] {
			case "msg":
				return route{kind: routeMsgs, app: seg[1]}
			case "endpoint":
				return route{kind: routeEndpoints, app: seg[1]}
			}
		case 4:
			switch seg[2] {
			case "msg":
				return route{kind: routeMsg, app: seg[1], id: seg[3]}
			case "endpoint":
				return route{kind: routeEndpoint, app: seg[1], id: seg[3]}
			}
		case 5:
			if seg[2] == "endpoint" && seg[4] == "secret" {
				return route{kind: routeEndpointSecret, app: seg[1], id: seg[3]}
			}
		case 6:
			if seg[2] == "endpoint" && seg[4] == "secret" && seg[5] == "rotate" {
				return route{kind: routeEndpointSecretRotate, app: seg[1], id: seg[3]}
			}
		}
	}
	return route{}
}

// handlerFunc is a method expression, so routing allocates nothing.
type handlerFunc func(*Server, *call) reply

// handlerFor returns the handler for the call's route and method; known
// reports whether the path exists at all (405 rather than 404).
func (s *Server) handlerFor(c *call) (h handlerFunc, known bool) {
	m := c.r.Method
	switch c.route.kind {
	case routeHealth:
		if m == http.MethodGet || m == http.MethodHead {
			return (*Server).health, true
		}
	case routeApps:
		switch m {
		case http.MethodGet:
			return (*Server).listApps, true
		case http.MethodPost:
			return (*Server).createApp, true
		}
	case routeApp:
		if m == http.MethodGet {
			return (*Server).getApp, true
		}
	case routeMsgs:
		switch m {
		case http.MethodGet:
			return (*Server).listMessages, true
		case http.MethodPost:
			return (*Server).createMessage, true
		}
	case routeMsg:
		if m == http.MethodGet {
			return (*Server).getMessage, true
		}
	case routeEndpoints:
		switch m {
		case http.MethodGet:
			return (*Server).listEndpoints, true
		case http.MethodPost:
			return (*Server).createEndpoint, true
		}
	case routeEndpoint:
		switch m {
		case http.MethodGet:
			return (*Server).getEndpoint, true
		case http.MethodDelete:
			return (*Server).deleteEndpoint, true
		}
	case routeEndpointSecret:
		if m == http.MethodGet {
			return (*Server).getEndpointSecret, true
		}
	case routeEndpointSecretRotate:
		if m == http.MethodPost {
			return (*Server).rotateEndpointSecret, true
		}
	case routeEventTypes:
		switch m {
		case http.MethodGet:
			return (*Server).listEventTypes, true
		case http.MethodPost:
			return (*Server).createEventType, true
		}
	case routeEventType:
		if m == http.MethodGet {
			return (*Server).getEventType, true
		}
	default:
		return nil, false
	}
	return nil, true
}

func (s *Server) health(*call) reply { return reply{status: http.StatusNoContent} }
