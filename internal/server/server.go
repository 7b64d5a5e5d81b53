// Package server is the relay's operations HTTP server: liveness,
// readiness, Prometheus metrics and, when configured, River UI behind basic
// auth.
package server

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Config configures the server.
type Config struct {
	// Addr is the listen address, e.g. "127.0.0.1:8080".
	Addr string
	// Ready reports readiness. /readyz answers 503 with a plain reason,
	// Reason(err), and logs the whole error: a driver's error names hosts,
	// users and databases, which are not for anyone who can reach the port.
	Ready func(ctx context.Context) error
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// Admin, when set, is mounted at AdminPrefix behind basic auth with
	// AdminUser and AdminPassword (River UI); it is not mounted unless both
	// are set. Requests get 401 without them, and state-changing requests
	// (POST, PUT, DELETE, ...) that a browser marks as cross-site (by
	// Sec-Fetch-Site or Origin) get 403, so a page on another site cannot
	// use a browser's stored credentials to cancel or delete jobs.
	Admin         http.Handler
	AdminPrefix   string
	AdminUser     string
	AdminPassword string
	Logger        *zap.Logger

	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included. Default
	// 30s (River UI's requests are small JSON bodies).
	ReadTimeout time.Duration
	// WriteTimeout bounds handling a request and writing its response.
	// Default 60s: above /readyz's 5 s check, a large /metrics and River
	// UI's job lists; nothing served here streams.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long. Default
	// 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps a request's headers. Default 64 KiB: River UI
	// sends a basic-auth header and a few small headers; Go's default is
	// 1 MiB.
	MaxHeaderBytes int
}

// WithDefaults returns c with zero timeouts and limits replaced by their
// defaults.
func (c Config) WithDefaults() Config {
	c.ReadHeaderTimeout = cmp.Or(c.ReadHeaderTimeout, 10*time.Second)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, 30*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 60*time.Second)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, 120*time.Second)
	c.MaxHeaderBytes = cmp.Or(c.MaxHeaderBytes, 64<<10)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

// Server is a started operations server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *zap.Logger
}

// Reason is what /readyz tells a client about err: the outermost context
// of a wrapped error ("database" for fmt.Errorf("database: %w", err)), or
// the whole message of an error that wraps nothing ("svix rejects the auth
// token"). A reason that looks like detail (an address, a key=value, a
// quoted name, or over 64 bytes: a driver's error returned unwrapped) is
// replaced by "check failed".
func Reason(err error) string {
	reason := err.Error()
	if inner := errors.Unwrap(err); inner != nil {
		outer, ok := strings.CutSuffix(reason, ": "+inner.Error())
		if !ok {
			return "check failed"
		}
		reason = outer
	}
	if reason == "" || len(reason) > 64 || strings.ContainsAny(reason, "`'\"=@:/") {
		return "check failed"
	}
	return reason
}

// Handler builds the routes.
func Handler(cfg Config) http.Handler {
	cfg = cfg.WithDefaults()
	log := cfg.Logger.Named("http")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := cfg.Ready(ctx); err != nil {
			reason := Reason(err)
			log.Warn("not ready", zap.String("reason", reason), zap.Error(err))
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", reason)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	// Never mounted without both credentials: an empty pair would let
	// anyone in.
	if cfg.Admin != nil && cfg.AdminUser != "" && cfg.AdminPassword != "" {
		// Cross-origin checks come first: a forged request is refused
		// before the browser's stored credentials are looked at.
		csrf := http.NewCrossOriginProtection()
		mux.Handle(cfg.AdminPrefix+"/", csrf.Handler(basicAuth(cfg.AdminUser, cfg.AdminPassword, cfg.Admin)))
	}
	return mux
}

// basicAuth admits requests carrying user and password. It compares
// SHA-256 digests, which have a fixed size, in constant time, and checks
// both before deciding, so neither the length of the secrets nor which of
// the two was wrong shows in the time it takes.
func basicAuth(user, password string, next http.Handler) http.Handler {
	wantUser, wantPassword := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPassword := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passwordOK := subtle.ConstantTimeCompare(gotPassword[:], wantPassword[:])
		if !ok || userOK&passwordOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="relay", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Start listens on cfg.Addr and serves in the background.
func Start(cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           Handler(cfg),
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			ReadTimeout:       cfg.ReadTimeout,
			WriteTimeout:      cfg.WriteTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			ErrorLog:          zap.NewStdLog(cfg.Logger.Named("http")),
		},
		ln:  ln,
		log: cfg.Logger.Named("http"),
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", zap.Error(err))
		}
	}()
	s.log.Info("http server listening", zap.String("addr", ln.Addr().String()))
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the server, waiting for requests in progress until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}
