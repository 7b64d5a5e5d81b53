package testkit

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/mediaplatform/relay/internal/svixfake"
)

// StartSvix starts the fake Svix with cfg on a loopback port, closed when
// tb ends, and returns it with a real Svix client for its default token.
func StartSvix(tb testing.TB, cfg svixfake.Config) (*svixfake.Server, *svix.Svix) {
	tb.Helper()
	fake := svixfake.NewStarted(tb, cfg)
	return fake, SvixClient(tb, fake.URL(), svixfake.DefaultToken)
}

// SvixClient builds a real Svix client for serverURL with no library
// retries, so a test sees every answer the server gives. wrap, when
// given, wraps the client's transport (to record response headers the
// client otherwise drops, say).
//
// Calls are bounded by context deadlines rather than http.Client.Timeout:
// on a 204 (Health.Get, Endpoint.Delete) the v1.99.1 client returns
// without closing the response body, so a Client.Timeout leaves
// net/http's timer goroutine running for the whole timeout, which goleak
// reports.
func SvixClient(tb testing.TB, serverURL, token string, wrap ...func(http.RoundTripper) http.RoundTripper) *svix.Svix {
	tb.Helper()
	u, err := url.Parse(serverURL)
	if err != nil {
		tb.Fatalf("testkit: parse Svix server url: %v", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tb.Cleanup(tr.CloseIdleConnections)
	var rt http.RoundTripper = tr
	for _, w := range wrap {
		rt = w(rt)
	}
	client, err := svix.New(token, &svix.SvixOptions{
		ServerUrl:     u,
		HTTPClient:    &http.Client{Transport: rt},
		RetrySchedule: &[]time.Duration{},
	})
	if err != nil {
		tb.Fatalf("testkit: Svix client: %v", err)
	}
	return client
}
