package live_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mediaplatform/relay/internal/testkit"
	"github.com/mediaplatform/relay/live"
)

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	expired := func() string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
			Subject: "acme", Audience: jwt.ClaimStrings{live.Audience}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute)),
		}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	foreign, err := live.Mint([]byte("another-secret-of-at-least-32-bytes!!"), "acme", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	noneAlg, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{
		Subject: "acme", Audience: jwt.ClaimStrings{live.Audience}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	otherAudience, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "acme", Audience: jwt.ClaimStrings{"something-else"}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}

	for name, hdr := range map[string][]string{
		"None":          nil,
		"Expired":       {"Authorization", "Bearer " + expired},
		"ForeignSigned": {"Authorization", "Bearer " + foreign},
		"AlgNone":       {"Authorization", "Bearer " + noneAlg},
		"OtherAudience": {"Authorization", "Bearer " + otherAudience},
		"Garbage":       {"Authorization", "Bearer abc.def.ghi"},
		"NotBearer":     {"Authorization", "Basic Zm9vOmJhcg=="},
		"ExpiredCookie": {"Cookie", live.CookieName + "=" + expired},
	} {
		t.Run(name, func(t *testing.T) {
			resp, cancel := b.get(t, "", "", hdr...)
			defer cancel()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q, want Bearer", resp.Header.Get("WWW-Authenticate"))
			}
			if code, _ := envelope(t, resp); code != "unauthenticated" {
				t.Errorf("code %q, want unauthenticated", code)
			}
		})
	}
}

func TestTokenExpiryEndsTheStream(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tok, err := live.Mint(secret, "acme", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := b.open(t, "", "", "Authorization", "Bearer "+tok)
	add(t, b.pool, "acme", "cut.completed", "1", "a")
	s.expectNext(t, "1")
	s.ended(t)
	resp, cancel := b.get(t, "", "", "Authorization", "Bearer "+tok, "Last-Event-ID", s.last())
	defer cancel()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reconnect with the expired token: %d, want 401", resp.StatusCode)
	}
	envelope(t, resp)
	// A fresh token resumes from the cursor.
	add(t, b.pool, "acme", "cut.completed", "2", "a")
	r := b.open(t, "acme", "", "Last-Event-ID", s.last())
	r.expectNext(t, "2")
}

func TestStreamCap(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *live.Config) { c.MaxStreamsPerApp = 2 })
	first := b.open(t, "acme", "")
	b.open(t, "acme", "")
	resp, cancel := b.get(t, "acme", "")
	defer cancel()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %d (Retry-After %q), want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, _ := envelope(t, resp); code != "too_many_streams" {
		t.Fatalf("code %q", code)
	}
	b.open(t, "other", "") // other accounts are not affected
	first.close()
	testkit.WaitFor(t, 10*time.Second, "a stream slot", func() bool { return b.h.Streams() == 2 })
	b.open(t, "acme", "")
}

func TestCloseEndsEveryStream(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var streams []*stream
	for _, app := range []string{"a1", "a1", "a2"} {
		streams = append(streams, b.open(t, app, ""))
	}
	b.h.Close()
	for _, s := range streams {
		s.ended(t)
	}
	resp, cancel := b.get(t, "a1", "")
	defer cancel()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream after Close: %d, want 503", resp.StatusCode)
	}
	envelope(t, resp)
}

func TestSession(t *testing.T) {
	t.Parallel()

	post := func(t *testing.T, b *bundle, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, b.srv.URL+live.SessionPath, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	t.Run("CookieOpensTheStream", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		resp := post(t, b, "Authorization", "Bearer "+token(t, "acme"))
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST session: %d", resp.StatusCode)
		}
		var got struct {
			AppID     string    `json:"app_id"`
			Cursor    string    `json:"cursor"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.AppID != "acme" || got.Cursor == "" || got.ExpiresAt.IsZero() {
			t.Fatalf("session answer %+v, %v", got, err)
		}
		cookies := resp.Cookies()
		if len(cookies) != 1 {
			t.Fatalf("cookies %v", cookies)
		}
		c := cookies[0]
		raw := resp.Header.Get("Set-Cookie")
		if c.Name != live.CookieName || c.Path != live.Path || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Expires.IsZero() {
			t.Fatalf("Set-Cookie %q: want HttpOnly, Secure, SameSite=Strict, Path=/v1/live and an expiry", raw)
		}
		// Rows committed after the session's cursor reach a stream opened
		// from it, as a page loading state in between would need.
		add(t, b.pool, "acme", "cut.completed", "after-cursor", "a")
		s := b.open(t, "", "?last_event_id="+got.Cursor, "Cookie", c.Name+"="+c.Value)
		s.expectNext(t, "after-cursor")
	})

	t.Run("NeedsABearerToken", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		resp := post(t, b)
		if resp.StatusCode != 401 || len(resp.Cookies()) != 0 {
			t.Fatalf("POST session without a token: %d, cookies %v", resp.StatusCode, resp.Cookies())
		}
		envelope(t, resp)
	})

	t.Run("InsecureCookieForLocalDevelopment", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *live.Config) { c.InsecureCookie = true })
		resp := post(t, b, "Authorization", "Bearer "+token(t, "acme"))
		resp.Body.Close()
		if c := resp.Cookies(); len(c) != 1 || c[0].Secure || !c[0].HttpOnly {
			t.Fatalf("cookie %q: want HttpOnly without Secure", resp.Header.Get("Set-Cookie"))
		}
	})

	t.Run("CORS", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(c *live.Config) { c.AllowedOrigins = []string{"https://app.example.com"} })
		req, _ := http.NewRequest(http.MethodOptions, b.srv.URL+live.SessionPath, nil)
		req.Header.Set("Origin", "https://app.example.com")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		resp, err := b.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" || h.Get("Access-Control-Allow-Credentials") != "true" ||
			!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Fatalf("preflight: %d %v", resp.StatusCode, h)
		}

		s := b.open(t, "acme", "", "Origin", "https://app.example.com")
		if s.resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" || s.resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("stream CORS headers: %v", s.resp.Header)
		}

		bad, cancel := b.get(t, "acme", "", "Origin", "https://evil.example.net")
		defer cancel()
		if bad.StatusCode != http.StatusForbidden || bad.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("foreign origin: %d %v, want 403 without CORS headers", bad.StatusCode, bad.Header)
		}
		if code, param := envelope(t, bad); code != "origin_not_allowed" || param != "Origin" {
			t.Fatalf("foreign origin: %s %s", code, param)
		}
	})
}

func TestMint(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		secret []byte
		app    string
		ttl    time.Duration
	}{
		"ShortSecret": {[]byte("short"), "acme", time.Minute},
		"BadApp":      {secret, "app_x", time.Minute},
		"ZeroTTL":     {secret, "acme", 0},
		"LongTTL":     {secret, "acme", 25 * time.Hour},
	} {
		if _, err := live.Mint(tc.secret, tc.app, tc.ttl); err == nil {
			t.Errorf("%s: Mint accepted it", name)
		}
	}
	if _, err := live.New(live.Config{DB: nil, Secret: secret}); err == nil {
		t.Error("New without DB accepted")
	}
}

// TestAccessLogNamesTheAccount: a stream's access log line, written when
// it ends, carries the token's app_id, as the endpoint API's lines do, and
// never the token.
func TestAccessLogNamesTheAccount(t *testing.T) {
	t.Parallel()
	logger, logs := testkit.Logger()
	b := setup(t, func(c *live.Config) { c.Logger = logger })
	tok := token(t, "acme")
	s := b.open(t, "", "", "Authorization", "Bearer "+tok)
	reqID := s.resp.Header.Get("X-Request-Id")
	s.close()

	var line map[string]any
	testkit.WaitFor(t, 10*time.Second, "the stream's access log line", func() bool {
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" && m["request_id"] == reqID {
				line = m
				return true
			}
		}
		return false
	})
	if line["route"] != "GET "+live.Path || line["app_id"] != "acme" {
		t.Errorf("access log line %v, want route GET %s and app_id acme", line, live.Path)
	}
	if strings.Contains(logs.String(), tok) {
		t.Error("the log contains the token")
	}
}
