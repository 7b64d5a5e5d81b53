package svixfake_test

import (
	"net/http"
	"testing"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"

	"github.com/mediaplatform/relay/internal/svixfake"
)

func TestEndpointListPages(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)
	created := map[string]bool{}
	for range 7 {
		ep, err := b.client.Endpoint.Create(testContext(t), app, models.EndpointIn{Url: "https://example.com/hooks"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		created[ep.Id] = true
	}

	limit := uint64(3)
	seen := map[string]bool{}
	var iter *string
	pages, last := 0, ""
	for {
		page, err := b.client.Endpoint.List(testContext(t), app, &svix.EndpointListOptions{Limit: &limit, Iterator: iter})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, ep := range page.Data {
			if seen[ep.Id] {
				t.Fatalf("endpoint %s listed twice", ep.Id)
			}
			if last != "" && ep.Id >= last {
				t.Fatalf("endpoint %s listed after %s: want descending ids", ep.Id, last)
			}
			seen[ep.Id], last = true, ep.Id
		}
		if page.Done {
			break
		}
		if page.Iterator == nil || len(page.Data) != int(limit) {
			t.Fatalf("page %d: %d items, iterator %v, not done", pages, len(page.Data), page.Iterator)
		}
		iter = page.Iterator
	}
	if pages != 3 || len(seen) != len(created) {
		t.Errorf("%d pages, %d endpoints; want 3 pages and all %d", pages, len(seen), len(created))
	}

	r := rawDo(t, http.MethodGet, b.srv.URL()+"/api/v1/app/"+app+"/endpoint?limit=251", svixfake.DefaultToken, "", nil)
	if r.status != http.StatusUnprocessableEntity {
		t.Errorf("limit=251: %d %s, want 422", r.status, r.body)
	}
}

func TestEndpointSecretRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, svixfake.Config{})
	app := createApp(t, b.client)
	ep, err := b.client.Endpoint.Create(testContext(t), app, models.EndpointIn{Url: "https://example.com/hooks"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, err := b.client.Endpoint.GetSecret(testContext(t), app, ep.Id)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.client.Endpoint.RotateSecret(testContext(t), app, ep.Id, models.EndpointSecretRotateIn{}, nil); err != nil {
		t.Fatal(err)
	}
	after, err := b.client.Endpoint.GetSecret(testContext(t), app, ep.Id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Key == before.Key || len(after.Key) < len("whsec_")+10 {
		t.Errorf("secret after rotation = %d characters, same as before: %v", len(after.Key), after.Key == before.Key)
	}
	err = b.client.Endpoint.RotateSecret(testContext(t), app, "ep_missing", models.EndpointSecretRotateIn{}, nil)
	svixErr(t, err, http.StatusNotFound)
	week := uint32(8 * 24 * 3600)
	err = b.client.Endpoint.RotateSecret(testContext(t), app, ep.Id, models.EndpointSecretRotateIn{GracePeriodSeconds: &week}, nil)
	svixErr(t, err, http.StatusUnprocessableEntity)

	if err := b.client.Endpoint.Delete(testContext(t), app, ep.Id); err != nil {
		t.Fatal(err)
	}
	_, err = b.client.Endpoint.GetSecret(testContext(t), app, ep.Id)
	svixErr(t, err, http.StatusNotFound)
}
