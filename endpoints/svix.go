package endpoints

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/mediaplatform/relay/internal/catalog"
	"github.com/mediaplatform/relay/internal/httpapi"
)

// newSvixClient builds the client the handler calls Svix with: the
// library's own retries off (the customer retries, on our Retry-After),
// timeouts from the request's context rather than http.Client.Timeout, and
// a transport that reads Retry-After, which the client otherwise drops.
func newSvixClient(token, serverURL string) (*svix.Svix, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 32
	opts := &svix.SvixOptions{
		HTTPClient:       &http.Client{Transport: transport},
		TransportWrapper: func(rt http.RoundTripper) http.RoundTripper { return retryAfterTransport{next: rt} },
		RetrySchedule:    &[]time.Duration{},
	}
	if serverURL != "" {
		u, err := url.Parse(strings.TrimRight(serverURL, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errors.New("endpoints: Config.SvixServerURL must be an absolute http(s) URL")
		}
		opts.ServerUrl = u
	}
	client, err := svix.New(token, opts)
	if err != nil {
		return nil, fmt.Errorf("endpoints: create svix client: %w", err)
	}
	return client, nil
}

// retryAfterBox carries a Svix response's Retry-After back to the handler
// through the request's context.
type retryAfterBox struct{ d atomic.Int64 }

type retryAfterKey struct{}

type retryAfterTransport struct{ next http.RoundTripper }

func (t retryAfterTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	if box, ok := r.Context().Value(retryAfterKey{}).(*retryAfterBox); ok {
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
			box.d.Store(int64(time.Duration(secs) * time.Second))
		}
	}
	return resp, nil
}

// call runs one Svix call with its own timeout inside the request's budget
// and maps a failure to the API's answer.
func (h *Handler) call(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	box := new(retryAfterBox)
	cctx, cancel := context.WithTimeout(context.WithValue(ctx, retryAfterKey{}, box), h.cfg.SvixTimeout)
	defer cancel()
	err := fn(cctx)
	if err == nil {
		return nil
	}
	return svixError(ctx, cctx, what, err, time.Duration(box.d.Load()))
}

// Retry-After sent when Svix gave none.
const (
	retryAfterOutage  = 5 * time.Second
	retryAfterTimeout = 5 * time.Second
	retryAfterLimited = time.Second
)

// svixError maps a Svix failure. Svix down or failing: 502 (an error
// answer), 503 (Svix said 503, or could not be reached) or 504 (no answer
// in time), each with Retry-After; Svix's 429: 429 with its Retry-After;
// 404: not_found. Never a 500 and never Svix's own text for our token's
// problems.
func svixError(reqCtx, callCtx context.Context, what string, err error, retryAfter time.Duration) error {
	cause := fmt.Errorf("svix %s: %w", what, err)
	var se *svix.Error
	if !errors.As(err, &se) {
		var ne net.Error
		switch {
		case reqCtx.Err() != nil && !errors.Is(reqCtx.Err(), context.DeadlineExceeded):
			return httpapi.Unavailable(http.StatusServiceUnavailable, httpapi.TypeAPI, "request_canceled", time.Second, cause, "The request was canceled.")
		case errors.Is(callCtx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
			return httpapi.Unavailable(http.StatusGatewayTimeout, httpapi.TypeAPI, "upstream_timeout", retryAfterTimeout, cause,
				"The webhook service did not answer in time; retry after the number of seconds in Retry-After.")
		default:
			return httpapi.Unavailable(http.StatusServiceUnavailable, httpapi.TypeAPI, "upstream_unavailable", retryAfterOutage, cause,
				"The webhook service cannot be reached; retry after the number of seconds in Retry-After.")
		}
	}
	cause = fmt.Errorf("svix %s: status %d: %s", what, se.Status(), strings.TrimSpace(string(se.Body())))
	switch status := se.Status(); {
	case status == http.StatusTooManyRequests:
		return httpapi.Unavailable(http.StatusTooManyRequests, httpapi.TypeRateLimit, "rate_limited", max(retryAfter, retryAfterLimited), cause,
			"Too many requests to the webhook service; retry after the number of seconds in Retry-After.")
	case status == http.StatusNotFound:
		return httpapi.NotFound("No such webhook endpoint.")
	case status == http.StatusServiceUnavailable:
		return httpapi.Unavailable(http.StatusServiceUnavailable, httpapi.TypeAPI, "upstream_unavailable", max(retryAfter, retryAfterOutage), cause,
			"The webhook service is unavailable; retry after the number of seconds in Retry-After.")
	case status == http.StatusGatewayTimeout || status == http.StatusRequestTimeout:
		return httpapi.Unavailable(http.StatusGatewayTimeout, httpapi.TypeAPI, "upstream_timeout", max(retryAfter, retryAfterTimeout), cause,
			"The webhook service did not answer in time; retry after the number of seconds in Retry-After.")
	case status == http.StatusUnprocessableEntity:
		if loc, msg, ok := svixURLError(se.Body()); ok {
			return httpapi.Invalid(http.StatusUnprocessableEntity, "invalid_url", "url", "url was refused by the webhook service: %s (%s).", msg, loc)
		}
	}
	// 5xx, and answers that mean our request or token is wrong (401, 403,
	// 400, 409, 422): the customer cannot fix them.
	return httpapi.Unavailable(http.StatusBadGateway, httpapi.TypeAPI, "upstream_error", max(retryAfter, retryAfterOutage), cause,
		"The webhook service failed to handle the request; retry after the number of seconds in Retry-After.")
}

// svixURLError finds a 422 item about body.url.
func svixURLError(body []byte) (loc, msg string, ok bool) {
	var b struct {
		Detail []struct {
			Loc []string `json:"loc"`
			Msg string   `json:"msg"`
		} `json:"detail"`
	}
	if json.Unmarshal(body, &b) != nil {
		return "", "", false
	}
	for _, d := range b.Detail {
		if len(d.Loc) == 2 && d.Loc[0] == "body" && d.Loc[1] == "url" {
			return strings.Join(d.Loc, "."), d.Msg, true
		}
	}
	return "", "", false
}

// isUnknownEventTypes reports Svix's 422 for filterTypes it does not know.
func isUnknownEventTypes(err error) bool {
	var se *svix.Error
	if !errors.As(err, &se) || se.Status() != http.StatusUnprocessableEntity {
		return false
	}
	body := string(se.Body())
	return strings.Contains(body, "eventTypes") || strings.Contains(body, "filterTypes")
}

// registry registers the event catalog in Svix before the first endpoint
// that needs a type, and again whenever an endpoint names a type not yet
// registered by this process (a type added by a migration), so no one has
// to run `relay svix sync` first.
type registry struct {
	mu   sync.Mutex
	done map[string]bool
}

// ensureEventTypes registers every catalog type unless all of names are
// known to be registered by this process; force registers them again
// (after Svix refused a type it should know). Concurrent callers wait for
// one registration.
func (h *Handler) ensureEventTypes(ctx context.Context, types []catalog.EventType, names []string, force bool) error {
	r := &h.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	if !force {
		missing := false
		for _, n := range names {
			if !r.done[n] {
				missing = true
				break
			}
		}
		if !missing {
			return nil
		}
	}
	for _, t := range types {
		// One call each, each with its own timeout.
		err := h.call(ctx, "register event type", func(ctx context.Context) error {
			return catalog.Sync(ctx, h.svix, []catalog.EventType{t}, func(catalog.EventType, catalog.Outcome) {})
		})
		if err != nil {
			return err
		}
		r.done[t.Name] = true
	}
	return nil
}
