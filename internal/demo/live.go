package demo

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/live"
)

// liveAddr is where the demo's product page listens when the port is free
// (a stable URL to keep open between runs); else a free port.
const liveAddr = "127.0.0.1:8074"

// liveApp is the account whose events the page shows.
const liveApp = "acme"

// livePage is a product backend as a product would write one: it mounts
// the live Handler under its own origin, and for its signed-in user (here:
// always acme) mints a short-lived token and sets the session cookie, so
// the page's JavaScript never sees the token and no URL carries it.
type livePage struct {
	url  string
	srv  *http.Server
	stop context.CancelFunc
	wg   sync.WaitGroup
}

func startLivePage(ctx context.Context, pool *pgxpool.Pool, log *zap.Logger) (*livePage, error) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	h, err := live.New(live.Config{DB: pool, Secret: secret, Logger: log, InsecureCookie: true}) // plain http on loopback
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", liveAddr)
	if err != nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("live page: listen: %w", err)
		}
	}
	signIn := func(w http.ResponseWriter) error {
		tok, err := live.Mint(secret, liveApp, 15*time.Minute)
		if err != nil {
			return err
		}
		return h.SetSessionCookie(w, tok)
	}
	page := live.Page(live.PageConfig{RefreshURL: "/session"})
	mux := http.NewServeMux()
	mux.Handle(live.Path, h)
	mux.Handle(live.Path+"/", h)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if err := signIn(w); err != nil {
			http.Error(w, "sign in failed", http.StatusInternalServerError)
			return
		}
		page.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /session", func(w http.ResponseWriter, _ *http.Request) {
		if err := signIn(w); err != nil {
			http.Error(w, "sign in failed", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p := &livePage{url: "http://" + ln.Addr().String() + "/", stop: stop,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	p.srv.RegisterOnShutdown(h.Close)
	p.wg.Go(func() { _ = h.Run(runCtx) })
	p.wg.Go(func() { _ = p.srv.Serve(ln) })
	return p, nil
}

func (p *livePage) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.srv.Shutdown(ctx)
	p.stop()
	p.wg.Wait()
}
