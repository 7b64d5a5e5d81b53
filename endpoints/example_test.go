package endpoints_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/mediaplatform/relay/apikey"
	"github.com/mediaplatform/relay/endpoints"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// A product mounts the API in its own server; here with the built-in API
// keys and a local Svix-compatible server.
func Example() {
	ctx := context.Background()
	pool, cleanup := pgtest.ForExample(ctx)
	defer cleanup()
	fake, err := svixfake.New(svixfake.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := fake.Start("127.0.0.1:0"); err != nil {
		log.Fatal(err)
	}
	defer fake.Close()

	api, err := endpoints.New(endpoints.Config{DB: pool, SvixToken: svixfake.DefaultToken, SvixServerURL: fake.URL()})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(endpoints.CollectionPath, api)
	mux.Handle(endpoints.ItemPrefix, api)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	_, key, err := apikey.NewStore(pool).Create(ctx, "acme", "example")
	if err != nil {
		log.Fatal(err)
	}
	body := `{"url": "https://example.com/hooks", "event_types": ["cut.completed", "render.completed"]}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/webhook-endpoints", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := srv.Client().Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var ep endpoints.Endpoint
	if err := json.NewDecoder(resp.Body).Decode(&ep); err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, ep.URL, ep.EventTypes, strings.HasPrefix(ep.Secret, "whsec_"))
	// Output: 201 Created https://example.com/hooks [cut.completed render.completed] true
}

// A product with API keys of its own plugs in its authenticator.
func Example_authenticator() {
	ctx := context.Background()
	pool, cleanup := pgtest.ForExample(ctx)
	defer cleanup()
	api, err := endpoints.New(endpoints.Config{DB: pool, SvixToken: "unused here", Authenticator: productAuth{}})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/v1/webhook-endpoints?limit=1000")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("WWW-Authenticate"))
	// Output: 401 Unauthorized Bearer realm="relay"
}

// productAuth stands for a product's own login or key check.
type productAuth struct{}

func (productAuth) Authenticate(r *http.Request) (apikey.Principal, error) {
	if r.Header.Get("X-Product-Login") == "" {
		return apikey.Principal{}, apikey.ErrUnauthenticated
	}
	return apikey.Principal{AppID: "acme", KeyID: "login"}, nil
}
