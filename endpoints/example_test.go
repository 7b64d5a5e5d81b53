package endpoints_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mediaplatform/relay/apikey"
	"github.com/mediaplatform/relay/endpoints"
	"github.com/mediaplatform/relay/internal/svixfake"
	"github.com/mediaplatform/relay/schema"
)

// A product mounts the API in its own server; here with the built-in API
// keys and a local Svix-compatible server.
func Example() {
	ctx := context.Background()
	pool, cleanup := exampleDB(ctx)
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
	pool, cleanup := exampleDB(ctx)
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

func exampleDB(ctx context.Context) (*pgxpool.Pool, func()) {
	base := os.Getenv("TEST_DATABASE_URL")
	if base == "" {
		base = os.Getenv("DATABASE_URL")
	}
	admin, err := pgxpool.New(ctx, base)
	if err != nil {
		log.Fatal(err)
	}
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	name := "ex_" + hex.EncodeToString(buf[:])
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{name}.Sanitize()); err != nil {
		log.Fatal(err)
	}
	u, err := url.Parse(base)
	if err != nil {
		log.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		log.Fatal(err)
	}
	if _, err := schema.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	return pool, func() {
		pool.Close()
		_, _ = admin.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE")
		admin.Close()
	}
}
