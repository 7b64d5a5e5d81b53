package demo

import (
	"bufio"
	"context"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/live"
)

// TestLivePage: the demo's product backend signs the visitor in with the
// session cookie (no token in any URL) and its page's stream carries the
// demo account's rows.
func TestLivePage(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	p, err := startLivePage(context.Background(), pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(p.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Set-Cookie"), live.CookieName+"=") || !strings.Contains(resp.Header.Get("Set-Cookie"), "HttpOnly") {
		t.Fatalf("GET /: %d, Set-Cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(p.url, "/")+live.Path, nil)
	stream, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != 200 {
		t.Fatalf("stream with the cookie: %d", stream.StatusCode)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'cut.completed', '{"entity_id": "c1", "asset_id": "a1"}')`); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stream.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") {
			if !strings.Contains(sc.Text(), `"entity_id": "c1"`) {
				t.Fatalf("event %s", sc.Text())
			}
			return
		}
	}
	t.Fatalf("the stream ended without the row: %v", sc.Err())
}
