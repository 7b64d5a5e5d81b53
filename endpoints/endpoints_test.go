package endpoints_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/mediaplatform/relay/apikey"
	"github.com/mediaplatform/relay/endpoints"
	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
)

func TestLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)

	ep := b.create(t, b.acme, "https://example.com/hooks", "cut.completed", "render.completed")
	if !strings.HasPrefix(ep.ID, "ep_") || !strings.HasPrefix(ep.Secret, "whsec_") || ep.URL != "https://example.com/hooks" {
		t.Fatalf("created %+v", ep)
	}
	if !slices.Equal(ep.EventTypes, []string{"cut.completed", "render.completed"}) || ep.CreatedAt.IsZero() {
		t.Errorf("created %+v", ep)
	}

	// In Svix: the account's application (uid = app_id), the endpoint with
	// filterTypes = event_types, the same secret, and the catalog registered.
	apps := b.fake.Apps()
	if len(apps) != 1 || apps[0].Uid == nil || *apps[0].Uid != "acme" {
		t.Fatalf("svix apps = %+v, want one with uid acme", apps)
	}
	eps := b.fake.Endpoints("acme")
	if len(eps) != 1 || eps[0].Id != ep.ID || !slices.Equal(eps[0].FilterTypes, ep.EventTypes) {
		t.Fatalf("svix endpoints = %+v", eps)
	}
	if n := len(b.fake.EventTypes()); n != 8 {
		t.Errorf("svix has %d event types, want the catalog's 8 registered automatically", n)
	}
	// A payload signed with the returned secret verifies with Svix's library.
	wh, err := svix.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatalf("secret is not a Svix secret: %v", err)
	}
	_ = wh

	r := b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints/" + ep.ID, key: b.acme})
	var got created
	r.json(t, &got)
	if r.status != http.StatusOK || got.ID != ep.ID || got.Secret != "" || strings.Contains(string(r.body), "whsec_") {
		t.Errorf("get: %d %s", r.status, r.body)
	}

	r = b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints/" + ep.ID + "/secret", key: b.acme})
	var sec struct{ Secret string }
	r.json(t, &sec)
	if r.status != http.StatusOK || sec.Secret != ep.Secret || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("secret: %d, same as at create: %v", r.status, sec.Secret == ep.Secret)
	}

	r = b.do(t, req{method: http.MethodPost, path: "/v1/webhook-endpoints/" + ep.ID + "/secret/rotate", key: b.acme})
	var rotated struct{ Secret string }
	r.json(t, &rotated)
	if r.status != http.StatusOK || rotated.Secret == ep.Secret || !strings.HasPrefix(rotated.Secret, "whsec_") {
		t.Errorf("rotate: %d, changed: %v", r.status, rotated.Secret != ep.Secret)
	}
	r = b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints/" + ep.ID + "/secret", key: b.acme})
	r.json(t, &sec)
	if sec.Secret != rotated.Secret {
		t.Errorf("secret after rotation is not the one rotate answered")
	}

	r = b.do(t, req{method: http.MethodDelete, path: "/v1/webhook-endpoints/" + ep.ID, key: b.acme})
	if r.status != http.StatusOK || string(r.body) != fmt.Sprintf(`{"id":%q,"deleted":true}`+"\n", ep.ID) {
		t.Errorf("delete: %d %s", r.status, r.body)
	}
	if n := len(b.fake.Endpoints("acme")); n != 0 {
		t.Errorf("svix still has %d endpoints", n)
	}
	for _, rq := range []req{
		{method: http.MethodDelete, path: "/v1/webhook-endpoints/" + ep.ID},
		{method: http.MethodGet, path: "/v1/webhook-endpoints/" + ep.ID},
		{method: http.MethodGet, path: "/v1/webhook-endpoints/" + ep.ID + "/secret"},
		{method: http.MethodPost, path: "/v1/webhook-endpoints/" + ep.ID + "/secret/rotate"},
	} {
		rq.key = b.acme
		r := b.do(t, rq)
		if r.status != http.StatusNotFound || r.envelope(t).Error.Code != "not_found" {
			t.Errorf("%s %s after delete: %d %s, want 404", rq.method, rq.path, r.status, r.body)
		}
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	mine := b.create(t, b.acme, "https://example.com/acme")
	theirs := b.create(t, b.other, "https://example.com/initech")

	for _, rq := range []req{
		{method: http.MethodGet, path: "/v1/webhook-endpoints/" + mine.ID},
		{method: http.MethodGet, path: "/v1/webhook-endpoints/" + mine.ID + "/secret"},
		{method: http.MethodPost, path: "/v1/webhook-endpoints/" + mine.ID + "/secret/rotate"},
		{method: http.MethodDelete, path: "/v1/webhook-endpoints/" + mine.ID},
	} {
		rq.key = b.other
		r := b.do(t, rq)
		if r.status != http.StatusNotFound {
			t.Errorf("initech %s %s: %d %s, want 404", rq.method, rq.path, r.status, r.body)
			continue
		}
		if strings.Contains(string(r.body), mine.Secret) {
			t.Errorf("%s %s: answer carries acme's secret", rq.method, rq.path)
		}
	}
	r := b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints", key: b.other})
	var list struct{ Data []created }
	r.json(t, &list)
	if len(list.Data) != 1 || list.Data[0].ID != theirs.ID {
		t.Errorf("initech lists %+v, want only its own endpoint", list.Data)
	}
	// acme's endpoint is untouched, secret included.
	r = b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints/" + mine.ID + "/secret", key: b.acme})
	var sec struct{ Secret string }
	r.json(t, &sec)
	if r.status != http.StatusOK || sec.Secret != mine.Secret {
		t.Errorf("acme's endpoint changed by another account: %d", r.status)
	}
	// A cursor is only a position: another account's cursor shows nothing of acme.
	cursor := "ZXBfMjk" // base64url of an ep_ id prefix is refused or harmless
	r = b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints?cursor=" + cursor, key: b.other})
	if strings.Contains(string(r.body), mine.ID) {
		t.Errorf("initech's page shows acme's endpoint: %s", r.body)
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := createBody("https://example.com/hooks")
	post := func(key, body, apiKey string) response {
		return b.do(t, req{method: http.MethodPost, path: "/v1/webhook-endpoints", key: apiKey, body: body,
			header: map[string]string{"Idempotency-Key": key}})
	}

	first := post("order-1", body, b.acme)
	if first.status != http.StatusCreated || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	var a, c created
	first.json(t, &a)

	// Same key, same body (other whitespace): the first answer, nothing new.
	again := post("order-1", strings.ReplaceAll(body, ",", ", "), b.acme)
	if again.status != http.StatusCreated || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: %d %s %v", again.status, again.body, again.header)
	}
	again.json(t, &c)
	if !reflect.DeepEqual(c, a) {
		t.Errorf("repeat answered %+v, want the first answer %+v", c, a)
	}
	if n := len(b.fake.Endpoints("acme")); n != 1 {
		t.Errorf("svix has %d endpoints after a repeat, want 1", n)
	}
	// The secret is not stored with the answer.
	var stored int
	if err := b.pool.QueryRow(ctx(t), `SELECT count(*) FROM api_idempotency WHERE position($1::bytea IN response) > 0`, []byte(a.Secret)).Scan(&stored); err != nil || stored != 0 {
		t.Errorf("secret stored in api_idempotency: %d rows (%v)", stored, err)
	}

	// Same key, another body: refused, nothing created.
	other := post("order-1", createBody("https://example.com/other"), b.acme)
	if e := other.envelope(t); other.status != http.StatusUnprocessableEntity || e.Error.Code != "idempotency_key_reused" || other.param() != "Idempotency-Key" {
		t.Errorf("other body: %d %s", other.status, other.body)
	}
	if n := len(b.fake.Endpoints("acme")); n != 1 {
		t.Errorf("svix has %d endpoints after a mismatch, want 1", n)
	}

	// Keys are per account.
	theirs := post("order-1", body, b.other)
	if theirs.status != http.StatusCreated || theirs.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("same key, other account: %d %v", theirs.status, theirs.header)
	}

	// Rotation honours the key too: one rotation.
	rot := func() response {
		return b.do(t, req{method: http.MethodPost, path: "/v1/webhook-endpoints/" + a.ID + "/secret/rotate", key: b.acme,
			header: map[string]string{"Idempotency-Key": "rotate-1"}})
	}
	r1, r2 := rot(), rot()
	var s1, s2 struct{ Secret string }
	r1.json(t, &s1)
	r2.json(t, &s2)
	if r1.status != http.StatusOK || r2.status != http.StatusOK || s1.Secret != s2.Secret || s1.Secret == a.Secret || r2.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("rotate twice with one key: %d %d, same secret %v", r1.status, r2.status, s1.Secret == s2.Secret)
	}

	// Bad keys.
	for _, k := range []string{strings.Repeat("k", 256), "tab\there"} {
		r := post(k, body, b.acme)
		if r.status != http.StatusBadRequest || r.param() != "Idempotency-Key" {
			t.Errorf("key %.10q: %d %s, want 400 naming Idempotency-Key", k, r.status, r.body)
		}
	}

	// Kept 24 hours: an older key is forgotten (a repeat creates anew) and pruned.
	if _, err := b.pool.Exec(ctx(t), `UPDATE api_idempotency SET created_at = now() - interval '25 hours' WHERE key = 'order-1' AND app_id = 'acme'`); err != nil {
		t.Fatal(err)
	}
	late := post("order-1", body, b.acme)
	if late.status != http.StatusCreated || late.header.Get("Idempotent-Replayed") != "" {
		t.Errorf("repeat after 25 h: %d %v, want a new create", late.status, late.header)
	}
	if _, err := b.pool.Exec(ctx(t), `UPDATE api_idempotency SET created_at = now() - interval '25 hours' WHERE key = 'rotate-1'`); err != nil {
		t.Fatal(err)
	}
	h, err := endpoints.New(endpoints.Config{DB: b.pool, SvixToken: svixfake.DefaultToken, SvixServerURL: b.fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := h.PruneIdempotencyKeys(ctx(t))
	if err != nil || n != 1 {
		t.Errorf("prune = %d, %v; want the one expired key", n, err)
	}
}

func TestIdempotencyConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := createBody("https://example.com/hooks")
	var wg sync.WaitGroup
	statuses := make([]int, 6)
	for i := range statuses {
		wg.Go(func() {
			r := b.do(t, req{method: http.MethodPost, path: "/v1/webhook-endpoints", key: b.acme, body: body,
				header: map[string]string{"Idempotency-Key": "same"}})
			statuses[i] = r.status
		})
	}
	wg.Wait()
	for _, s := range statuses {
		if s != http.StatusCreated && s != http.StatusConflict {
			t.Errorf("statuses %v: want 201 or 409 (still running)", statuses)
		}
	}
	if n := len(b.fake.Endpoints("acme")); n != 1 {
		t.Errorf("svix has %d endpoints after concurrent repeats, want 1", n)
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	want := map[string]bool{}
	for i := range 7 {
		want[b.create(t, b.acme, fmt.Sprintf("https://example.com/hooks/%d", i)).ID] = true
	}
	b.create(t, b.other, "https://example.com/not-acme")

	seen := map[string]bool{}
	path, pages := "/v1/webhook-endpoints?limit=3", 0
	for {
		r := b.do(t, req{method: http.MethodGet, path: path, key: b.acme})
		if r.status != http.StatusOK {
			t.Fatalf("page %d: %d %s", pages, r.status, r.body)
		}
		if strings.Contains(string(r.body), "whsec_") || strings.Contains(string(r.body), `"secret"`) {
			t.Errorf("a list carries a secret: %s", r.body)
		}
		var page struct {
			Data       []created `json:"data"`
			HasMore    bool      `json:"has_more"`
			NextCursor *string   `json:"next_cursor"`
		}
		r.json(t, &page)
		pages++
		for _, ep := range page.Data {
			if seen[ep.ID] || !want[ep.ID] {
				t.Fatalf("page %d lists %s: repeated or not acme's", pages, ep.ID)
			}
			seen[ep.ID] = true
		}
		if !page.HasMore {
			if page.NextCursor != nil || !strings.Contains(string(r.body), `"next_cursor":null`) {
				t.Errorf("last page: next_cursor %v, want null", page.NextCursor)
			}
			break
		}
		if page.NextCursor == nil || len(page.Data) != 3 {
			t.Fatalf("page %d: %d items, cursor %v", pages, len(page.Data), page.NextCursor)
		}
		path = "/v1/webhook-endpoints?limit=3&cursor=" + *page.NextCursor
	}
	if pages != 3 || len(seen) != 7 {
		t.Errorf("%d pages, %d endpoints; want 3 pages and 7", pages, len(seen))
	}

	// Default page size, and an account without a Svix application yet.
	r := b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints", key: b.acme})
	var page struct{ Data []created }
	r.json(t, &page)
	if len(page.Data) != 7 {
		t.Errorf("default page: %d items, want 7", len(page.Data))
	}
	_, fresh, err := b.keys.Create(ctx(t), "fresh-account", "")
	if err != nil {
		t.Fatal(err)
	}
	r = b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints", key: fresh})
	if r.status != http.StatusOK || string(r.body) != `{"data":[],"has_more":false,"next_cursor":null}`+"\n" {
		t.Errorf("account without endpoints: %d %s", r.status, r.body)
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	post := func(body string) req {
		return req{method: http.MethodPost, path: "/v1/webhook-endpoints", body: body}
	}
	withTypes := func(types string) string {
		return `{"url":"https://example.com/hooks","event_types":` + types + `}`
	}
	withURL := func(u string) string { return createBody(u) }
	big := `{"url":"https://example.com/hooks","event_types":["cut.completed"],"description":"` + strings.Repeat("x", 1<<20) + `"}`

	for _, tc := range []struct {
		name   string
		req    req
		status int
		code   string
		param  string
	}{
		{"invalid json", post(`{"url":`), 400, "invalid_json", ""},
		{"empty body", post(``), 400, "invalid_json", ""},
		{"not an object", post(`["https://example.com"]`), 400, "invalid_json", ""},
		{"null", post(` null `), 400, "invalid_json", ""},
		{"two objects", post(`{}{}`), 400, "invalid_json", ""},
		{"unknown field", post(`{"url":"https://example.com","event_types":["cut.completed"],"secret":"x"}`), 400, "unknown_field", "secret"},
		{"over 1 MiB", post(big), 413, "request_too_large", ""},
		{"url missing", post(`{"event_types":["cut.completed"]}`), 422, "missing_field", "url"},
		{"url null", post(`{"url":null,"event_types":["cut.completed"]}`), 422, "missing_field", "url"},
		{"url not a string", post(`{"url":42,"event_types":["cut.completed"]}`), 422, "invalid_type", "url"},
		{"url empty", post(withURL("")), 422, "invalid_url", "url"},
		{"url relative", post(withURL("/hooks")), 422, "invalid_url", "url"},
		{"url without scheme", post(withURL("example.com/hooks")), 422, "invalid_url", "url"},
		{"url http", post(withURL("http://example.com/hooks")), 422, "invalid_url", "url"},
		{"url ftp", post(withURL("ftp://example.com/hooks")), 422, "invalid_url", "url"},
		{"url userinfo", post(withURL("https://user:pass@example.com/hooks")), 422, "invalid_url", "url"},
		{"url localhost", post(withURL("https://localhost/hooks")), 422, "invalid_url", "url"},
		{"url sub.localhost", post(withURL("https://api.localhost./hooks")), 422, "invalid_url", "url"},
		{"url loopback", post(withURL("https://127.0.0.1/hooks")), 422, "invalid_url", "url"},
		{"url private 10", post(withURL("https://10.1.2.3/hooks")), 422, "invalid_url", "url"},
		{"url private 172", post(withURL("https://172.16.0.1/hooks")), 422, "invalid_url", "url"},
		{"url private 192.168", post(withURL("https://192.168.1.10:8443/hooks")), 422, "invalid_url", "url"},
		{"url metadata", post(withURL("https://169.254.169.254/latest/meta-data")), 422, "invalid_url", "url"},
		{"url ipv6 loopback", post(withURL("https://[::1]/hooks")), 422, "invalid_url", "url"},
		{"url ipv4-mapped", post(withURL("https://[::ffff:127.0.0.1]/hooks")), 422, "invalid_url", "url"},
		{"url unspecified", post(withURL("https://0.0.0.0/hooks")), 422, "invalid_url", "url"},
		{"url decimal ip", post(withURL("https://2130706433/hooks")), 422, "invalid_url", "url"},
		{"url short ip", post(withURL("https://127.1/hooks")), 422, "invalid_url", "url"},
		{"url hex ip", post(withURL("https://0x7f.0.0.1/hooks")), 422, "invalid_url", "url"},
		{"url port out of range", post(withURL("https://example.com:99999/hooks")), 422, "invalid_url", "url"},
		{"url port zero", post(withURL("https://example.com:0/hooks")), 422, "invalid_url", "url"},
		{"url too long", post(withURL("https://example.com/" + strings.Repeat("a", 2048))), 422, "invalid_url", "url"},
		{"event_types missing", post(`{"url":"https://example.com/hooks"}`), 422, "missing_field", "event_types"},
		{"event_types null", post(withTypes(`null`)), 422, "invalid_event_types", "event_types"},
		{"event_types empty", post(withTypes(`[]`)), 422, "invalid_event_types", "event_types"},
		{"event_types a string", post(withTypes(`"cut.completed"`)), 422, "invalid_event_types", "event_types"},
		{"event_types item not a string", post(withTypes(`["cut.completed", 3]`)), 422, "invalid_event_types", "event_types[1]"},
		{"event_types item unknown", post(withTypes(`["cut.completed", "cut.started"]`)), 422, "invalid_event_types", "event_types[1]"},
		{"event_types item repeated", post(withTypes(`["cut.completed", "render.failed", "cut.completed"]`)), 422, "invalid_event_types", "event_types[2]"},
		{"description too long", post(`{"url":"https://example.com","event_types":["cut.completed"],"description":"` + strings.Repeat("d", 513) + `"}`), 422, "invalid_description", "description"},
		{"description not a string", post(`{"url":"https://example.com","event_types":["cut.completed"],"description":1}`), 422, "invalid_type", "description"},
		{"limit 0", req{method: http.MethodGet, path: "/v1/webhook-endpoints?limit=0"}, 400, "invalid_limit", "limit"},
		{"limit 101", req{method: http.MethodGet, path: "/v1/webhook-endpoints?limit=101"}, 400, "invalid_limit", "limit"},
		{"limit word", req{method: http.MethodGet, path: "/v1/webhook-endpoints?limit=ten"}, 400, "invalid_limit", "limit"},
		{"cursor garbage", req{method: http.MethodGet, path: "/v1/webhook-endpoints?cursor=%25%25"}, 400, "invalid_cursor", "cursor"},
		{"cursor not ours", req{method: http.MethodGet, path: "/v1/webhook-endpoints?cursor=YWJj"}, 400, "invalid_cursor", "cursor"},
		{"id not an endpoint id", req{method: http.MethodGet, path: "/v1/webhook-endpoints/..%2F..%2Fapp"}, 404, "not_found", ""},
		{"method not allowed", req{method: http.MethodPut, path: "/v1/webhook-endpoints"}, 405, "method_not_allowed", ""},
		{"unknown route", req{method: http.MethodGet, path: "/v1/nothing-here"}, 404, "not_found", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.key = b.acme
			r := b.do(t, tc.req)
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
			e := r.envelope(t)
			if e.Error.Code != tc.code || r.param() != tc.param {
				t.Errorf("code %q param %q (%s), want %q %q", e.Error.Code, r.param(), e.Error.Message, tc.code, tc.param)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	// Nothing reached Svix for a refused request.
	if n := b.fake.RequestCount(); n != 0 {
		t.Errorf("svix received %d requests for refused requests, want none", n)
	}
}

func TestInsecureEndpointsAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *endpoints.Config) { c.AllowInsecureURLs = true })
	for _, u := range []string{"http://127.0.0.1:9999/hooks", "http://localhost:3000/hooks", "https://10.0.0.5/hooks", "http://[::1]:8080/x"} {
		b.create(t, b.acme, u)
	}
	for _, u := range []string{"https://0.0.0.0/hooks", "ftp://127.0.0.1/x", "http://user@127.0.0.1/x"} {
		r := b.do(t, req{method: http.MethodPost, path: "/v1/webhook-endpoints", key: b.acme, body: createBody(u)})
		if r.status != http.StatusUnprocessableEntity || r.param() != "url" {
			t.Errorf("%s with insecure endpoints allowed: %d %s, want 422", u, r.status, r.body)
		}
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k, revokedKey, err := b.keys.Create(ctx(t), "acme", "to revoke")
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, header map[string]string) {
		t.Helper()
		r := b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints", header: header})
		e := r.envelope(t)
		if r.status != http.StatusUnauthorized || e.Error.Type != "authentication_error" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %s %v", name, r.status, r.body, r.header)
		}
	}
	check("no header", nil)
	check("basic", map[string]string{"Authorization": "Basic YWNtZTpwdw=="})
	check("bearer without key", map[string]string{"Authorization": "Bearer "})
	check("not a key", map[string]string{"Authorization": "Bearer hello"})
	check("unknown key", map[string]string{"Authorization": "Bearer rk_live_" + strings.Repeat("A", 43)})
	check("key of another shape", map[string]string{"Authorization": "Bearer " + revokedKey + "x"})

	ok := b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints", key: revokedKey})
	if ok.status != http.StatusOK {
		t.Fatalf("fresh key: %d %s", ok.status, ok.body)
	}
	var used *time.Time
	if err := b.pool.QueryRow(ctx(t), `SELECT last_used_at FROM api_key WHERE id = $1`, k.ID).Scan(&used); err != nil || used == nil {
		t.Errorf("last_used_at = %v, %v; want set", used, err)
	}
	if _, err := b.keys.Revoke(ctx(t), k.ID); err != nil {
		t.Fatal(err)
	}
	check("revoked key", map[string]string{"Authorization": "Bearer " + revokedKey})
	// Authentication comes before anything else: a bad body without a key is a 401.
	r := b.do(t, req{method: http.MethodPost, path: "/v1/webhook-endpoints", body: `{`})
	if r.status != http.StatusUnauthorized {
		t.Errorf("bad body without key: %d", r.status)
	}
}

func TestSvixFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		fault      func(*svixfake.Server, chan struct{})
		status     int
		code       string
		retryAfter string // "" means any positive value
	}{
		{"down, answering 503", func(f *svixfake.Server, _ chan struct{}) { f.Outage(time.Now().Add(time.Hour), false) }, 503, "upstream_unavailable", ""},
		{"down, dropping connections", func(f *svixfake.Server, _ chan struct{}) { f.Outage(time.Now().Add(time.Hour), true) }, 503, "upstream_unavailable", ""},
		{"failing with 500", func(f *svixfake.Server, _ chan struct{}) { f.SetFailureRate(1, 500) }, 502, "upstream_error", ""},
		{"rate limiting", func(f *svixfake.Server, _ chan struct{}) { f.Throttle(100, 7*time.Second) }, 429, "rate_limited", "7"},
		{"slow", func(f *svixfake.Server, release chan struct{}) {
			f.SetInterceptor(func(*svixfake.Request) (svixfake.Reply, bool) {
				<-release // past the API's Svix timeout
				return svixfake.Reply{}, false
			})
		}, 504, "upstream_timeout", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ep := b.create(t, b.acme, "https://example.com/hooks")
			// From here on, for the slow case, a short Svix timeout: the
			// same database and Svix.
			timeout := 10 * time.Second
			if tc.code == "upstream_timeout" {
				timeout = 300 * time.Millisecond
			}
			h, err := endpoints.New(endpoints.Config{DB: b.pool, SvixToken: svixfake.DefaultToken, SvixServerURL: b.fake.URL(),
				RateLimit: -1, SvixTimeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			b.srv = httptest.NewServer(h)
			t.Cleanup(b.srv.Close)
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			tc.fault(b.fake, release)
			for _, rq := range []req{
				{method: http.MethodPost, path: "/v1/webhook-endpoints", body: createBody("https://example.com/two")},
				{method: http.MethodGet, path: "/v1/webhook-endpoints"},
				{method: http.MethodGet, path: "/v1/webhook-endpoints/" + ep.ID},
				{method: http.MethodGet, path: "/v1/webhook-endpoints/" + ep.ID + "/secret"},
				{method: http.MethodDelete, path: "/v1/webhook-endpoints/" + ep.ID},
			} {
				rq.key = b.acme
				r := b.do(t, rq)
				e := r.envelope(t)
				secs, err := strconv.Atoi(r.header.Get("Retry-After"))
				if r.status != tc.status || e.Error.Code != tc.code || err != nil || secs < 1 || (tc.retryAfter != "" && r.header.Get("Retry-After") != tc.retryAfter) {
					t.Errorf("%s %s: %d %s Retry-After %q; want %d %s", rq.method, rq.path, r.status, r.body, r.header.Get("Retry-After"), tc.status, tc.code)
				}
				if strings.Contains(e.Error.Message, "svix") || strings.Contains(e.Error.Message, "http") {
					t.Errorf("message leaks internals: %q", e.Error.Message)
				}
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *endpoints.Config) { c.RateLimit = 0.01; c.RateBurst = 2 })
	list := func(key string) response {
		return b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints", key: key})
	}
	for i := range 2 {
		if r := list(b.acme); r.status != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %s", i, r.status, r.body)
		}
	}
	r := list(b.acme)
	e := r.envelope(t)
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != http.StatusTooManyRequests || e.Error.Type != "rate_limit_error" || err != nil || secs < 1 {
		t.Errorf("over the rate: %d %s Retry-After %q", r.status, r.body, r.header.Get("Retry-After"))
	}
	if r := list(b.other); r.status != http.StatusOK {
		t.Errorf("another key is limited too: %d", r.status)
	}
}

// TestAccessLog: one line per request with the route pattern, status,
// duration, request id and app_id; no key or secret in any line.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ep := b.create(t, b.acme, "https://example.com/hooks")
	r1 := b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints/" + ep.ID + "/secret", key: b.acme})
	r2 := b.do(t, req{method: http.MethodPost, path: "/v1/webhook-endpoints/" + ep.ID + "/secret/rotate", key: b.acme})
	var rotated struct{ Secret string }
	r2.json(t, &rotated)
	b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints", key: b.acme + "x"})
	b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints", header: map[string]string{"Authorization": "Bearer " + b.other[:20]}})
	b.do(t, req{method: http.MethodPost, path: "/v1/webhook-endpoints", key: b.acme, body: `{"url":"` + ep.Secret + `","event_types":["cut.completed"]}`})

	logs := b.logs.String()
	for name, secret := range map[string]string{"acme key": b.acme, "initech key prefix": b.other[:20], "secret": ep.Secret, "rotated secret": rotated.Secret, "secret base64": strings.TrimPrefix(ep.Secret, "whsec_")} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the %s", name)
		}
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 6 {
		t.Fatalf("%d access log lines for 6 requests:\n%s", len(lines), logs)
	}
	byID := map[string]map[string]any{}
	for _, l := range lines {
		for _, k := range []string{"method", "route", "status", "duration", "request_id"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line without %s: %v", k, l)
			}
		}
		byID[l["request_id"].(string)] = l
	}
	l := byID[r1.header.Get("X-Request-Id")]
	if l["route"] != "GET /v1/webhook-endpoints/{id}/secret" || l["app_id"] != "acme" || l["status"] != float64(200) {
		t.Errorf("secret read logged as %v", l)
	}
}

func TestHandlerSurvivesPanickingAuthenticator(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *endpoints.Config) { c.Authenticator = panicking{} })
	r := b.do(t, req{method: http.MethodGet, path: "/v1/webhook-endpoints", key: b.acme})
	if e := r.envelope(t); r.status != http.StatusInternalServerError || e.Error.Code != "internal_error" {
		t.Errorf("panic: %d %s", r.status, r.body)
	}
	if !strings.Contains(b.logs.String(), "handler panicked") {
		t.Errorf("panic not logged")
	}
}

// TestDatabaseDown: with the database gone, the API answers 503 with
// Retry-After and the envelope, never a 500.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := pgtest.NewSchema(t)
	gone := s.Pool(t)
	gone.Close()
	for name, auth := range map[string]apikey.Authenticator{"built-in keys": nil, "own authenticator": staticAuth{}} {
		h, err := endpoints.New(endpoints.Config{DB: gone, Authenticator: auth, SvixToken: svixfake.DefaultToken, SvixServerURL: b.fake.URL()})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, srv.URL+"/v1/webhook-endpoints", strings.NewReader(createBody("https://example.com/hooks")))
		req.Header.Set("Authorization", "Bearer "+b.acme)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"request_id"`) {
			t.Errorf("%s: %d %s Retry-After %q, want 503 with Retry-After", name, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
	}
}

// TestEventTypesRegisteredAgain: when Svix refuses an endpoint's
// filterTypes with its 422 (its event types were lost after this process
// registered them), the catalog is registered again and the create retried.
func TestEventTypesRegisteredAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.create(t, b.acme, "https://example.com/first")
	var mu sync.Mutex
	refused, registered := 0, 0
	b.fake.SetInterceptor(func(r *svixfake.Request) (svixfake.Reply, bool) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/endpoint") && refused == 0:
			refused++
			return svixfake.Reply{Status: http.StatusUnprocessableEntity,
				Body: []byte(`{"detail":[{"loc":["body","eventTypes"],"msg":"The following event types don't exist: cut.completed","type":"value_error"}]}`)}, true
		case r.Method == http.MethodPost && r.Path == "/api/v1/event-type":
			registered++
		}
		return svixfake.Reply{}, false
	})
	ep := b.create(t, b.acme, "https://example.com/second")
	mu.Lock()
	defer mu.Unlock()
	if refused != 1 || registered != 8 || ep.ID == "" {
		t.Errorf("refused %d, registered %d types again; want 1 and the catalog's 8", refused, registered)
	}
}
