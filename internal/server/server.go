// Package server is the relay's operations HTTP server: liveness,
// readiness, Prometheus metrics and, when configured, River UI behind basic
// auth.
package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Config configures the server.
type Config struct {
	// Addr is the listen address, e.g. "127.0.0.1:8080".
	Addr string
	// Ready reports readiness; /readyz answers 503 with its error.
	Ready func(ctx context.Context) error
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	// Admin, when set, is mounted at AdminPrefix behind basic auth with
	// AdminUser and AdminPassword (River UI); it is not mounted unless both
	// are set. Requests get 401 without them.
	Admin         http.Handler
	AdminPrefix   string
	AdminUser     string
	AdminPassword string
	Logger        *zap.Logger
}

// Server is a started operations server.
type Server struct {
	srv *http.Server
	ln  net.Listener
	log *zap.Logger
}

// Handler builds the routes.
func Handler(cfg Config) http.Handler {
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
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %v\n", err)
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
		mux.Handle(cfg.AdminPrefix+"/", basicAuth(cfg.AdminUser, cfg.AdminPassword, cfg.Admin))
	}
	return mux
}

func basicAuth(user, password string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="relay", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Start listens on cfg.Addr and serves in the background.
func Start(cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{
		srv: &http.Server{Handler: Handler(cfg), ReadHeaderTimeout: 10 * time.Second},
		ln:  ln,
		log: log.Named("http"),
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
