package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/apikey"
	"github.com/mediaplatform/relay/endpoints"
	"github.com/mediaplatform/relay/outbox"
)

// demoAPI is the endpoint management API (package endpoints, what `relay
// serve` serves) on a loopback listener, with an API key per demo app. The
// demo subscribes its receiver through it, as a customer would.
type demoAPI struct {
	srv   *http.Server
	url   string
	http  *http.Client
	keys  map[string]string // app -> API key
	ids   []int64           // the keys' ids, revoked by close
	store *apikey.Store
	done  chan struct{}
}

// startAPI serves the API for the dev Svix server at svixURL on addr and
// creates an API key for each app. The receiver's URLs are plain http on
// loopback, so insecure endpoints are allowed, as they are for local
// development only.
func startAPI(ctx context.Context, pool *pgxpool.Pool, svixURL, addr string, log *zap.Logger) (*demoAPI, error) {
	api, err := endpoints.New(endpoints.Config{
		DB: pool, SvixToken: Token, SvixServerURL: svixURL, Logger: log, AllowInsecureURLs: true,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("endpoint API: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(endpoints.CollectionPath, api)
	mux.Handle(endpoints.ItemPrefix, api)
	a := &demoAPI{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		url:  "http://" + ln.Addr().String(),
		http: &http.Client{Timeout: 30 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()},
		keys: make(map[string]string),
		done: make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		_ = a.srv.Serve(ln)
	}()
	a.store = apikey.NewStore(pool)
	for _, app := range Apps {
		k, key, err := a.store.Create(ctx, app, "relay demo")
		if err != nil {
			a.close()
			return nil, err
		}
		a.keys[app], a.ids = key, append(a.ids, k.ID)
	}
	return a, nil
}

// subscribe creates app's endpoint for url, subscribed to every event
// type, with POST /v1/webhook-endpoints and app's API key, and returns the
// signing secret the API answered.
func (a *demoAPI) subscribe(ctx context.Context, app, url string) (string, error) {
	types := make([]string, len(outbox.EventTypes))
	for i, t := range outbox.EventTypes {
		types[i] = string(t)
	}
	body, _ := json.Marshal(endpoints.CreateRequest{URL: url, EventTypes: types, Description: "relay demo receiver"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url+endpoints.CollectionPath, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+a.keys[app])
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("create the endpoint of %s through the API: %w", app, err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	var ep endpoints.Endpoint
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(got, &ep) != nil || ep.Secret == "" {
		return "", fmt.Errorf("create the endpoint of %s through the API: %s: %s", app, resp.Status, bytes.TrimSpace(got))
	}
	return ep.Secret, nil
}

func (a *demoAPI) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = a.srv.Close()
	}
	<-a.done
	a.http.CloseIdleConnections()
	for _, id := range a.ids {
		_, _ = a.store.Revoke(ctx, id) // the demo's keys end with it
	}
}
