package live

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/httpapi"
)

// Routes the Handler serves; mount it at both (or at "/v1/live" and
// "/v1/live/" with a ServeMux).
const (
	// Path is the stream: GET, text/event-stream.
	Path = "/v1/live"
	// SessionPath exchanges a bearer token for the session cookie (POST)
	// and clears it (DELETE).
	SessionPath = "/v1/live/session"
	// CookieName is the session cookie EventSource sends, scoped to Path.
	CookieName = "relay_live"
)

// Handler serves the live stream and its session endpoint. Create it with
// New, run its reader with Run, and mount it; Close ends every stream.
type Handler struct {
	cfg  Config
	hub  *hub
	log  *zap.Logger
	next http.Handler
}

// New returns a Handler; zero fields of cfg take their defaults.
func New(cfg Config) (*Handler, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Logger = cfg.Logger.Named("live")
	h := &Handler{cfg: cfg, hub: newHub(cfg), log: cfg.Logger}
	mux := http.NewServeMux()
	mux.Handle("GET "+Path, httpapi.Routed(httpapi.HandlerFunc(h.serveStream)))
	mux.Handle("POST "+SessionPath, httpapi.Routed(httpapi.HandlerFunc(h.createSession)))
	mux.Handle("DELETE "+SessionPath, httpapi.Routed(httpapi.HandlerFunc(h.deleteSession)))
	mux.Handle(Path, httpapi.Routed(httpapi.MethodNotAllowed("GET, OPTIONS")))
	mux.Handle(SessionPath, httpapi.Routed(httpapi.MethodNotAllowed("POST, DELETE, OPTIONS")))
	mux.Handle("/", httpapi.Routed(httpapi.NotFoundHandler()))
	h.next = httpapi.Chain(mux, httpapi.RequestID, httpapi.AccessLog(cfg.Logger), httpapi.Recover(cfg.Logger), h.cors)
	return h, nil
}

// Run reads new outbox rows and hands them to the streams until ctx ends,
// then ends every stream. Unless Config.NoSequencer is set it also numbers
// committed rows. It returns nil when ctx ends.
func (h *Handler) Run(ctx context.Context) error {
	return h.hub.run(ctx)
}

// Close ends every stream at once (their clients reconnect elsewhere or
// later with their cursor) and answers new ones 503. Register it with
// http.Server.RegisterOnShutdown: Shutdown alone waits for streams that
// never go idle.
func (h *Handler) Close() { h.hub.close() }

// Streams returns how many streams are open.
func (h *Handler) Streams() int { return h.hub.streams() }

// Dropped returns how many streams were cut off for falling behind.
func (h *Handler) Dropped() int64 { return h.hub.dropped.Load() }

// ReadQueries returns how many reads of new rows the Handler has run.
func (h *Handler) ReadQueries() int64 { return h.hub.queries.Load() }

// CurrentCursor returns the cursor of the latest row the stream has seen.
// A page that takes it before loading state from the product's read API
// and then opens the stream with ?last_event_id= misses nothing.
func (h *Handler) CurrentCursor(ctx context.Context) (string, error) {
	if err := h.waitReady(ctx); err != nil {
		return "", err
	}
	return cursor{epoch: h.hub.epoch, seq: h.hub.position()}.String(), nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.next.ServeHTTP(w, r) }

// readyWait bounds how long a request waits for the reader's first read.
const readyWait = 5 * time.Second

func (h *Handler) waitReady(ctx context.Context) error {
	select {
	case <-h.hub.ready:
		return nil
	default:
	}
	t := time.NewTimer(readyWait)
	defer t.Stop()
	select {
	case <-h.hub.ready:
		return nil
	case <-h.hub.closing:
		return unavailable("shutting_down", "The server is shutting down; reconnect shortly.")
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return unavailable("live_unavailable", "The live stream cannot read the database yet; retry shortly.")
	}
}

func unavailable(code, msg string) *httpapi.Error {
	return httpapi.Unavailable(http.StatusServiceUnavailable, httpapi.TypeAPI, code, 2*time.Second, nil, "%s", msg)
}
