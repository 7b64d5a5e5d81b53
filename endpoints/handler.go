package endpoints

import (
	"context"
	"net/http"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/apikey"
	"github.com/mediaplatform/relay/internal/catalog"
	"github.com/mediaplatform/relay/internal/httpapi"
)

// Handler serves the endpoint API. It is safe for concurrent use.
type Handler struct {
	cfg      Config
	svix     *svix.Svix
	registry registry
	handler  http.Handler
}

// Paths the handler serves; mount both (or a prefix holding them).
const (
	CollectionPath = "/v1/webhook-endpoints"
	ItemPrefix     = "/v1/webhook-endpoints/"
)

// New returns the API's handler for cfg, or the first configuration error.
func New(cfg Config) (*Handler, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client, err := newSvixClient(cfg.SvixToken, cfg.SvixServerURL)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, svix: client, registry: registry{done: make(map[string]bool)}}

	log := cfg.Logger.Named("api")
	limiter := httpapi.NewRateLimiter(cfg.RateLimit, cfg.RateBurst)
	route := func(fn httpapi.HandlerFunc) http.Handler {
		return httpapi.Chain(fn, httpapi.Routed, httpapi.Authenticate(cfg.Authenticator), limiter.Middleware)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/webhook-endpoints", route(h.create))
	mux.Handle("GET /v1/webhook-endpoints", route(h.list))
	mux.Handle("GET /v1/webhook-endpoints/{id}", route(h.get))
	mux.Handle("DELETE /v1/webhook-endpoints/{id}", route(h.delete))
	mux.Handle("GET /v1/webhook-endpoints/{id}/secret", route(h.secret))
	mux.Handle("POST /v1/webhook-endpoints/{id}/secret/rotate", route(h.rotate))
	for pattern, allow := range map[string]string{
		"/v1/webhook-endpoints":                    "GET, POST",
		"/v1/webhook-endpoints/{id}":               "GET, DELETE",
		"/v1/webhook-endpoints/{id}/secret":        "GET",
		"/v1/webhook-endpoints/{id}/secret/rotate": "POST",
	} {
		mux.Handle(pattern, httpapi.Chain(httpapi.MethodNotAllowed(allow), httpapi.Routed))
	}
	mux.Handle("/", httpapi.NotFoundHandler())
	h.handler = httpapi.Chain(mux, httpapi.RequestID, httpapi.AccessLog(log), httpapi.Recover(log))
	return h, nil
}

// ServeHTTP serves one request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.handler.ServeHTTP(w, r) }

func principal(r *http.Request) apikey.Principal {
	p, _ := httpapi.PrincipalFrom(r.Context())
	return p
}

// budget bounds the Svix work of one request.
func (h *Handler) budget(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
}

// pathID reads {id}; anything not shaped like an endpoint id is a 404
// without a call to Svix.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !validEndpointID(id) {
		return "", httpapi.NotFound("No such webhook endpoint.")
	}
	return id, nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	var body createBody
	if _, err := httpapi.DecodeJSON(w, r, &body); err != nil {
		return err
	}
	ctx, cancel := h.budget(r)
	defer cancel()
	types, err := catalog.Load(ctx, h.cfg.DB)
	if err != nil {
		return dbError(err)
	}
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.Name
	}
	req, err := validateCreate(body, names, h.cfg.AllowInsecureURLs)
	if err != nil {
		return err
	}
	app := principal(r).AppID
	return h.idempotent(ctx, w, r, app, requestHash("create", req), func(ctx context.Context, svixKey *string) (result, error) {
		if err := h.ensureEventTypes(ctx, types, req.EventTypes, false); err != nil {
			return result{}, err
		}
		err := h.call(ctx, "get or create application", func(ctx context.Context) error {
			_, err := h.svix.Application.GetOrCreate(ctx, models.ApplicationIn{Name: app, Uid: &app}, nil)
			return err
		})
		if err != nil {
			return result{}, err
		}
		in := models.EndpointIn{Url: req.URL, FilterTypes: req.EventTypes, Description: &req.Description}
		var out *models.EndpointOut
		create := func(ctx context.Context) error {
			var err error
			out, err = h.svix.Endpoint.Create(ctx, app, in, &svix.EndpointCreateOptions{IdempotencyKey: svixKey})
			return err
		}
		var svixErr error
		err = h.call(ctx, "create endpoint", func(ctx context.Context) error {
			svixErr = create(ctx)
			return svixErr
		})
		if err != nil && isUnknownEventTypes(svixErr) {
			// Svix lost a type this process registered (its database was
			// reset): register the catalog again and retry once.
			if err := h.ensureEventTypes(ctx, types, req.EventTypes, true); err != nil {
				return result{}, err
			}
			err = h.call(ctx, "create endpoint", create)
		}
		if err != nil {
			return result{}, err
		}
		ep := endpointOf(*out)
		secret, err := h.readSecret(ctx, app, ep.ID)
		if err != nil {
			return result{}, err
		}
		ep.Secret = secret
		return result{status: http.StatusCreated, endpointID: ep.ID, body: ep}, nil
	})
}

func (h *Handler) readSecret(ctx context.Context, app, id string) (string, error) {
	var secret string
	err := h.call(ctx, "get endpoint secret", func(ctx context.Context) error {
		out, err := h.svix.Endpoint.GetSecret(ctx, app, id)
		if err == nil {
			secret = out.Key
		}
		return err
	})
	return secret, err
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) error {
	pg, err := parsePage(r.URL.Query())
	if err != nil {
		return err
	}
	ctx, cancel := h.budget(r)
	defer cancel()
	app := principal(r).AppID
	limit := uint64(pg.limit)
	opts := &svix.EndpointListOptions{Limit: &limit}
	if pg.iterator != "" {
		opts.Iterator = &pg.iterator
	}
	var out *models.ListResponseEndpointOut
	err = h.call(ctx, "list endpoints", func(ctx context.Context) error {
		var err error
		out, err = h.svix.Endpoint.List(ctx, app, opts)
		return err
	})
	var apiErr *httpapi.Error
	if asError(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		// The account has no Svix application yet: no endpoints.
		out, err = &models.ListResponseEndpointOut{Done: true}, nil
	}
	if err != nil {
		return err
	}
	list := List{Data: make([]Endpoint, 0, len(out.Data)), HasMore: !out.Done}
	for _, ep := range out.Data {
		list.Data = append(list.Data, endpointOf(ep))
	}
	if !out.Done && out.Iterator != nil {
		c := encodeCursor(*out.Iterator)
		list.NextCursor = &c
	} else {
		list.HasMore = false
	}
	httpapi.WriteJSON(w, http.StatusOK, list)
	return nil
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ctx, cancel := h.budget(r)
	defer cancel()
	var out *models.EndpointOut
	err = h.call(ctx, "get endpoint", func(ctx context.Context) error {
		var err error
		out, err = h.svix.Endpoint.Get(ctx, principal(r).AppID, id)
		return err
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, endpointOf(*out))
	return nil
}

func (h *Handler) delete(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ctx, cancel := h.budget(r)
	defer cancel()
	err = h.call(ctx, "delete endpoint", func(ctx context.Context) error {
		return h.svix.Endpoint.Delete(ctx, principal(r).AppID, id)
	})
	if err != nil {
		return err
	}
	httpapi.WriteJSON(w, http.StatusOK, Deleted{ID: id, Deleted: true})
	return nil
}

func (h *Handler) secret(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ctx, cancel := h.budget(r)
	defer cancel()
	secret, err := h.readSecret(ctx, principal(r).AppID, id)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, Secret{Secret: secret})
	return nil
}

// rotate replaces the signing secret; Svix keeps signing with the old one
// too for 24 hours (its default grace period), so receivers can switch
// without losing deliveries. It answers the new secret.
func (h *Handler) rotate(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if r.ContentLength != 0 {
		var empty struct{}
		if _, err := httpapi.DecodeJSON(w, r, &empty); err != nil {
			return err
		}
	}
	ctx, cancel := h.budget(r)
	defer cancel()
	app := principal(r).AppID
	return h.idempotent(ctx, w, r, app, requestHash("rotate", id), func(ctx context.Context, svixKey *string) (result, error) {
		err := h.call(ctx, "rotate endpoint secret", func(ctx context.Context) error {
			return h.svix.Endpoint.RotateSecret(ctx, app, id, models.EndpointSecretRotateIn{}, &svix.EndpointRotateSecretOptions{IdempotencyKey: svixKey})
		})
		if err != nil {
			return result{}, err
		}
		secret, err := h.readSecret(ctx, app, id)
		if err != nil {
			return result{}, err
		}
		return result{status: http.StatusOK, endpointID: id, body: Secret{Secret: secret}}, nil
	})
}

// GracePeriod is how long Svix keeps signing with a rotated-out secret
// (Svix's default for a rotation without gracePeriodSeconds).
const GracePeriod = 24 * time.Hour
