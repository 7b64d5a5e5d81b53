package dispatch

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	svix "github.com/svix/svix-webhooks/go"
	"github.com/svix/svix-webhooks/go/models"
)

// SvixConfig configures a SvixSender.
type SvixConfig struct {
	// Token is the Svix API token. Required. It is sent only in the
	// Authorization header and never appears in errors or logs.
	Token string
	// ServerURL is the API base URL for self-hosted Svix, a local dev server
	// or tests. A trailing slash is removed. Default: chosen by the Svix
	// client from the token's region.
	ServerURL string
	// Timeout bounds one HTTP request. Default 15s.
	Timeout time.Duration
	// MaxConns is the number of keep-alive connections kept to Svix; set it
	// to at least the number of sends in flight. Default 100.
	MaxConns int
}

// SvixSender sends messages with the Svix Go client, built for the relay:
// the library's own retries off (River owns retries and backoff), an
// explicit timeout, keep-alive connections sized for the concurrency, and a
// transport wrapper that reads Retry-After (the client drops headers).
type SvixSender struct {
	client *svix.Svix
}

var _ Sender = (*SvixSender)(nil)

// NewSvixSender builds a sender.
func NewSvixSender(cfg SvixConfig) (*SvixSender, error) {
	if cfg.Token == "" {
		return nil, errors.New("svix token is required")
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 15*time.Second)
	cfg.MaxConns = cmp.Or(cfg.MaxConns, 100)

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns = cfg.MaxConns
	transport.MaxIdleConnsPerHost = cfg.MaxConns
	transport.IdleConnTimeout = 90 * time.Second
	opts := &svix.SvixOptions{
		HTTPClient:       &http.Client{Timeout: cfg.Timeout, Transport: transport},
		TransportWrapper: func(rt http.RoundTripper) http.RoundTripper { return retryAfterTransport{next: rt} },
		RetrySchedule:    &[]time.Duration{},
	}
	if cfg.ServerURL != "" {
		u, err := url.Parse(strings.TrimRight(cfg.ServerURL, "/"))
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("svix server URL %q: must be an absolute http(s) URL", cfg.ServerURL)
		}
		opts.ServerUrl = u
	}
	client, err := svix.New(cfg.Token, opts)
	if err != nil {
		return nil, fmt.Errorf("create svix client: %w", err)
	}
	return &SvixSender{client: client}, nil
}

// Client returns the underlying Svix client (for svix sync and tools).
func (s *SvixSender) Client() *svix.Svix { return s.client }

// Send creates the message; the application is created on the fly from
// the message itself when it does not exist. A 409 on the eventId means
// Svix already accepted the row: the message id is looked up and returned.
func (s *SvixSender) Send(ctx context.Context, msg Message) (Sent, error) {
	payload, err := payloadOf(msg)
	if err != nil {
		return Sent{}, &PermanentError{Status: 0, Code: "invalid_data", Detail: err.Error()}
	}
	key, app := msg.Key, msg.AppID
	in := models.MessageIn{
		EventType:   msg.EventType,
		Payload:     payload,
		EventId:     &key,
		Application: &models.ApplicationIn{Name: app, Uid: &app},
	}
	box := new(retryAfterBox)
	out, err := s.client.Message.Create(withRetryAfterBox(ctx, box), app, in, &svix.MessageCreateOptions{IdempotencyKey: &key})
	if err == nil {
		if err := collision(msg, out); err != nil {
			return Sent{}, err
		}
		return Sent{MessageID: out.Id}, nil
	}
	if classified := classify(ctx, err, box); !isConflict(err) {
		return Sent{}, classified
	}
	got, err := s.client.Message.Get(ctx, app, key, nil)
	if err != nil {
		return Sent{}, fmt.Errorf("look up message by eventId after 409: %w", classify(ctx, err, box))
	}
	if err := collision(msg, got); err != nil {
		return Sent{}, err
	}
	return Sent{MessageID: got.Id, Duplicate: true}, nil
}

// collision refuses a message Svix holds under msg's key that is not msg's
// event: another event type, entity or asset. Keys are unique within one
// outbox, so this is another database's row with the same id, created_at
// and app id (two shards sharing a Svix application, or a restored copy):
// recording it as msg's delivery would lose msg without a trace. The row
// fails instead (a replay keeps its key, so it stays failed until the
// operator sorts the app ids out). After a 409 the looked-up message carries its payload; a create's
// answer carries only its event type (the Svix client fills in the payload
// sent), so within Svix's idempotency window a replayed answer of the same
// type cannot be told apart.
func collision(msg Message, out *models.MessageOut) error {
	if out == nil || out.Payload["data"] == nil {
		return nil
	}
	var held, ours struct {
		EntityID string `json:"entity_id"`
		AssetID  string `json:"asset_id"`
	}
	if sent, ok := out.Payload["data"].(json.RawMessage); ok && bytes.Equal(sent, bytes.TrimSpace(msg.Data)) {
		// A create's answer: its payload is the map this send built around
		// the row's own data (only payloadOf makes a json.RawMessage), so
		// only the event type can differ and nothing needs decoding.
		if out.EventType == msg.EventType {
			return nil
		}
		_ = json.Unmarshal(sent, &held) // for the error only
	} else {
		raw, err := json.Marshal(out.Payload["data"])
		if err != nil || json.Unmarshal(raw, &held) != nil || json.Unmarshal(msg.Data, &ours) != nil {
			return nil
		}
		if out.EventType == msg.EventType && held == ours {
			return nil
		}
	}
	return &PermanentError{Code: "key_collision", Detail: fmt.Sprintf(
		"svix holds message %s (%s, entity %q) under this row's key: a row of another outbox with the same app id, id and created_at (a second database sharing the Svix application?): give each database its own app ids",
		out.Id, out.EventType, held.EntityID)}
}

// Lookup gets the message by its eventId (the row's key).
func (s *SvixSender) Lookup(ctx context.Context, msg Message) (Sent, error) {
	box := new(retryAfterBox)
	got, err := s.client.Message.Get(withRetryAfterBox(ctx, box), msg.AppID, msg.Key, nil)
	if err != nil {
		var se *svix.Error
		if errors.As(err, &se) && se.Status() == http.StatusNotFound {
			return Sent{}, nil
		}
		return Sent{}, fmt.Errorf("look up message by eventId: %w", classify(ctx, err, box))
	}
	return Sent{MessageID: got.Id, Duplicate: true}, nil
}

// CheckAuth lists at most one application.
func (s *SvixSender) CheckAuth(ctx context.Context) error {
	limit := uint64(1)
	box := new(retryAfterBox)
	_, err := s.client.Application.List(withRetryAfterBox(ctx, box), &svix.ApplicationListOptions{Limit: &limit})
	if err != nil {
		return classify(ctx, err, box)
	}
	return nil
}

// payloadOf builds {"type": ..., "data": ...} with data as the row's JSON
// text, unchanged, so that numbers reach Svix digit for digit without
// decoding and encoding the data again.
func payloadOf(msg Message) (map[string]any, error) {
	data := bytes.TrimSpace(msg.Data)
	if len(data) == 0 || data[0] != '{' {
		return nil, errors.New("outbox data is not a JSON object")
	}
	if !json.Valid(data) {
		return nil, errors.New("outbox data is not valid JSON")
	}
	return map[string]any{"type": msg.EventType, "data": json.RawMessage(data)}, nil
}

func isConflict(err error) bool {
	var se *svix.Error
	return errors.As(err, &se) && se.Status() == http.StatusConflict
}

// classify maps a Svix client error to the package's error types.
func classify(ctx context.Context, err error, box *retryAfterBox) error {
	var se *svix.Error
	if !errors.As(err, &se) {
		if ctx.Err() != nil {
			return ctx.Err() // cut off by the caller (shutdown or job timeout)
		}
		return &TransientError{Err: err}
	}
	code, detail := errorBody(se.Body())
	switch status := se.Status(); {
	case status == http.StatusTooManyRequests:
		return &RateLimitedError{RetryAfter: box.get()}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return &AuthError{Status: status, Detail: detail}
	case status == http.StatusRequestTimeout || status >= 500:
		return &TransientError{Status: status, Err: fmt.Errorf("%s: %s", code, detail)}
	default:
		return &PermanentError{Status: status, Code: code, Detail: detail}
	}
}

// errorBody reads Svix's {"code","detail"}; a 422's detail is a list,
// kept as JSON text.
func errorBody(body []byte) (code, detail string) {
	var b struct {
		Code   string          `json:"code"`
		Detail json.RawMessage `json:"detail"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return "", truncate(string(body), 500)
	}
	var s string
	if json.Unmarshal(b.Detail, &s) == nil {
		return b.Code, truncate(s, 500)
	}
	return b.Code, truncate(string(b.Detail), 500)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// retryAfterBox carries a response's Retry-After from the transport back to
// Send, through the request's context.
type retryAfterBox struct{ d atomic.Int64 }

func (b *retryAfterBox) get() time.Duration { return time.Duration(b.d.Load()) }

type retryAfterKey struct{}

func withRetryAfterBox(ctx context.Context, b *retryAfterBox) context.Context {
	return context.WithValue(ctx, retryAfterKey{}, b)
}

type retryAfterTransport struct{ next http.RoundTripper }

func (t retryAfterTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	next := t.next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err != nil || resp == nil {
		return resp, err
	}
	if box, ok := req.Context().Value(retryAfterKey{}).(*retryAfterBox); ok {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			box.d.Store(int64(d))
		}
	}
	return resp, nil
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}
