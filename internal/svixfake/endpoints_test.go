package svixfake_test

import (
	"net/http"
	"testing"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
)

// conformEndpointListPages: endpoints list newest first (descending id),
// limit items a page, iterator = the page's last id, done on the last page;
// a limit over 250 is a 422. Part of the conformance suite.
func conformEndpointListPages(t *testing.T, tg target) {
	app := createApp(t, tg.client)
	created := map[string]bool{}
	for range 7 {
		ep, err := tg.client.Endpoint.Create(testContext(t), app, models.EndpointIn{Url: "https://example.com/hooks"}, nil)
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
		page, err := tg.client.Endpoint.List(testContext(t), app, &svix.EndpointListOptions{Limit: &limit, Iterator: iter})
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

	r := rawDo(t, http.MethodGet, tg.url+"/api/v1/app/"+app+"/endpoint?limit=251", tg.token, "", nil)
	if r.status != http.StatusUnprocessableEntity {
		t.Errorf("limit=251: %d %s, want 422", r.status, r.body)
	}
}

// conformEndpointSecretRotation: rotation answers 204 and replaces the
// secret; a grace period over 7 days is a 422; a missing endpoint is a 404.
// Part of the conformance suite.
func conformEndpointSecretRotation(t *testing.T, tg target) {
	app := createApp(t, tg.client)
	ep, err := tg.client.Endpoint.Create(testContext(t), app, models.EndpointIn{Url: "https://example.com/hooks"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	before, err := tg.client.Endpoint.GetSecret(testContext(t), app, ep.Id)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.client.Endpoint.RotateSecret(testContext(t), app, ep.Id, models.EndpointSecretRotateIn{}, nil); err != nil {
		t.Fatal(err)
	}
	after, err := tg.client.Endpoint.GetSecret(testContext(t), app, ep.Id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Key == before.Key || len(after.Key) < len("whsec_")+10 {
		t.Errorf("secret after rotation = %d characters, same as before: %v", len(after.Key), after.Key == before.Key)
	}
	err = tg.client.Endpoint.RotateSecret(testContext(t), app, "ep_missing", models.EndpointSecretRotateIn{}, nil)
	svixErr(t, err, http.StatusNotFound)
	week := uint32(8 * 24 * 3600)
	err = tg.client.Endpoint.RotateSecret(testContext(t), app, ep.Id, models.EndpointSecretRotateIn{GracePeriodSeconds: &week}, nil)
	svixErr(t, err, http.StatusUnprocessableEntity)

	if err := tg.client.Endpoint.Delete(testContext(t), app, ep.Id); err != nil {
		t.Fatal(err)
	}
	_, err = tg.client.Endpoint.GetSecret(testContext(t), app, ep.Id)
	svixErr(t, err, http.StatusNotFound)
}
