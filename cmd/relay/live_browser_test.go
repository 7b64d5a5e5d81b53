package main_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// chromium finds a headless-capable Chromium; without one the test fails,
// naming what to install (make test installs Debian's chromium when it
// runs as root, as it does PostgreSQL).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found (chromium, chromium-browser, google-chrome or $CHROMIUM): install Debian's chromium (apt-get install chromium); make test does when it runs as root")
	return ""
}

// TestLiveBrowser loads relay serve's first-party page in headless
// Chromium: the page opens an EventSource with the session cookie, rows
// inserted with SQL appear on it, and after relay serve is restarted the
// page resumes with neither a gap nor a duplicate.
func TestLiveBrowser(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	b := setup(t, svixfake.Config{})
	addr := freeAddr(t)
	p := serveLive(t, "relay serve", b.schema.URL, addr)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Flag("headless", "new"), chromedp.DisableGPU)...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(alloc)
	defer cancelCtx()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	// The product's backend would hand the page a token; here the test
	// does, through the DevTools protocol (never a URL), and the page
	// exchanges it for the HttpOnly cookie.
	tok := liveToken(t, "acme")
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+addr+"/live")); err != nil {
		t.Fatalf("load the page: %v", err)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](
		fmt.Sprintf(`fetch("/v1/live/session", {method: "POST", headers: {Authorization: "Bearer %s"}}).then(r => r.status)`, tok),
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("open a session from the page: %v", err)
	}
	if status != 200 {
		t.Fatalf("POST /v1/live/session from the page: %v", status)
	}
	if cookieVisible, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.cookie.includes("relay_live")`)); err != nil || cookieVisible {
		t.Fatalf("the session cookie is visible to JavaScript (%v): it must be HttpOnly", err)
	}

	items := func() []string {
		out, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#events li")).map(li => li.dataset.id + " " + li.textContent)`))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return out
	}
	state := func() string {
		s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.state || ""`))
		return s
	}
	waitItems := func(n int) []string {
		var got []string
		waitFor(t, 30*time.Second, fmt.Sprintf("%d events on the page", n), func() bool {
			got = items()
			return len(got) >= n
		})
		return got
	}
	waitFor(t, 30*time.Second, "the page's stream to open", func() bool { return state() == "open" })

	for _, e := range []string{"1", "2", "3"} {
		insertLive(t, b.pool, "acme", e)
	}
	insertLive(t, b.pool, "other", "not-mine")
	waitItems(3)

	// Restart relay serve; rows committed while it is down are replayed
	// when the page reconnects with its Last-Event-ID.
	p.stop(t, 10*time.Second)
	waitFor(t, 30*time.Second, "the page to notice the restart", func() bool { return state() != "open" })
	insertLive(t, b.pool, "acme", "4")
	insertLive(t, b.pool, "acme", "5")
	serveLive(t, "relay serve (restarted)", b.schema.URL, addr)
	waitFor(t, 60*time.Second, "the page to reconnect", func() bool { return state() == "open" })
	insertLive(t, b.pool, "acme", "6")
	got := waitItems(6)

	// Exactly 1..6 in order: no gap, no duplicate, no other account's row.
	seen := map[string]bool{}
	var entities []string
	for _, it := range got {
		id, text, _ := strings.Cut(it, " ")
		if seen[id] {
			t.Errorf("event id %s shown twice", id)
		}
		seen[id] = true
		i := strings.Index(text, `"entity_id": "`)
		if !strings.HasPrefix(text, "render.completed ") || i < 0 {
			t.Fatalf("page item %q", it)
		}
		rest := text[i+len(`"entity_id": "`):]
		entities = append(entities, rest[:strings.IndexByte(rest, '"')])
	}
	if strings.Join(entities, ",") != "1,2,3,4,5,6" {
		t.Fatalf("the page shows %v, want 1..6 once each, in order", entities)
	}
}
