package live

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/mediaplatform/relay/internal/httpapi"
)

// authenticate reads the token from Authorization: Bearer, or else from
// the session cookie, and verifies it. Any failure is a 401 (with
// WWW-Authenticate), whose message says why without the token.
func (h *Handler) authenticate(r *http.Request) (principal, error) {
	token, source := "", ""
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, rest, ok := strings.Cut(a, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(rest) == "" {
			return principal{}, unauthenticated("Authorization must be \"Bearer <live token>\".")
		}
		token, source = strings.TrimSpace(rest), "bearer"
	} else if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		token, source = c.Value, "cookie"
	}
	if token == "" {
		return principal{}, unauthenticated("No live token: send Authorization: Bearer <token>, or open a session first (POST " + SessionPath + ").")
	}
	p, err := verify(h.cfg.Secret, token, time.Now())
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), errBadToken.Error()+": ")
		if source == "cookie" {
			msg = "The session cookie's token is invalid: " + msg + "."
		} else {
			msg = "The bearer token is invalid: " + msg + "."
		}
		return principal{}, unauthenticated(msg)
	}
	httpapi.SetAppID(r.Context(), p.AppID)
	return p, nil
}

func unauthenticated(msg string) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusUnauthorized, Type: httpapi.TypeAuthentication, Code: "unauthenticated", Message: msg}
}

// createSession exchanges a bearer token for the session cookie, which
// EventSource (it cannot set headers) sends to the stream. The cookie is
// HttpOnly, Secure (unless Config.InsecureCookie), SameSite=Strict and
// scoped to Path; it expires with the token. The answer carries the
// current cursor: take it before loading state, then open the stream from
// it.
func (h *Handler) createSession(w http.ResponseWriter, r *http.Request) error {
	if r.Header.Get("Authorization") == "" {
		return unauthenticated("Send the live token as Authorization: Bearer <token> to open a session.")
	}
	p, err := h.authenticate(r)
	if err != nil {
		return err
	}
	cur, err := h.CurrentCursor(r.Context())
	if err != nil {
		return err
	}
	http.SetCookie(w, h.cookie(strings.TrimSpace(strings.SplitN(r.Header.Get("Authorization"), " ", 2)[1]), p.Expires))
	w.Header().Set("Cache-Control", "no-store")
	httpapi.WriteJSON(w, http.StatusOK, struct {
		AppID     string    `json:"app_id"`
		ExpiresAt time.Time `json:"expires_at"`
		Cursor    string    `json:"cursor"`
	}{p.AppID, p.Expires.UTC(), cur})
	return nil
}

// deleteSession clears the cookie (sign-out).
func (h *Handler) deleteSession(w http.ResponseWriter, _ *http.Request) error {
	c := h.cookie("", time.Unix(0, 0))
	c.MaxAge = -1
	http.SetCookie(w, c)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) cookie(token string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name: CookieName, Value: token, Path: Path, Expires: expires,
		HttpOnly: true, Secure: !h.cfg.InsecureCookie, SameSite: http.SameSiteStrictMode,
	}
}

// SetSessionCookie sets the session cookie for token on w: for a product
// that mounts the Handler under its own origin and mints the token in the
// same backend, so that the token never reaches the page's JavaScript.
func (h *Handler) SetSessionCookie(w http.ResponseWriter, token string) error {
	p, err := verify(h.cfg.Secret, token, time.Now())
	if err != nil {
		return errors.New("live: set session cookie: " + err.Error())
	}
	http.SetCookie(w, h.cookie(token, p.Expires))
	return nil
}

// cors answers preflights and adds the CORS headers, with credentials, for
// the configured first-party origins. A browser request from any other
// origin (other than the server's own) is refused with 403.
func (h *Handler) cors(next http.Handler) http.Handler {
	allowed := make(map[string]bool, len(h.cfg.AllowedOrigins))
	for _, o := range h.cfg.AllowedOrigins {
		allowed[o] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		w.Header().Add("Vary", "Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !allowed[origin] {
			if sameOrigin(origin, r) {
				next.ServeHTTP(w, r)
				return
			}
			httpapi.WriteError(w, r, &httpapi.Error{Status: http.StatusForbidden, Type: httpapi.TypeInvalidRequest, Code: "origin_not_allowed", Param: "Origin",
				Message: "This origin may not use the live stream; its operator lists first-party origins in RELAY_LIVE_ORIGINS."})
			return
		}
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hd.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
			hd.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control")
			hd.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		hd.Set("Access-Control-Expose-Headers", "X-Request-Id")
		next.ServeHTTP(w, r)
	})
}

// sameOrigin reports whether origin names the host the request was sent
// to (a page of the server itself).
func sameOrigin(origin string, r *http.Request) bool {
	_, host, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(host, r.Host)
}
