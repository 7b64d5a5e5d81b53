package svixfake

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// DefaultToken is the bearer token accepted when Config.Tokens is empty.
const DefaultToken = "testsk_relay"

// Defaults applied by Config.WithDefaults.
const (
	// DefaultMaxBodyBytes is the largest request body accepted (1 MiB, the
	// hosted Svix limit); larger bodies are answered 413 payload_too_large.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultIdempotencyTTL is how long a 2xx answer is replayed for a
	// repeated idempotency-key (12 hours, as the Svix server).
	DefaultIdempotencyTTL = 12 * time.Hour
	// DefaultMaxRecordedRequests bounds the request log (oldest dropped).
	DefaultMaxRecordedRequests = 100_000
	// DefaultDeliveryTimeout is how long a dev-mode delivery attempt may
	// take; like Svix, a 2xx within 15 s is a success.
	DefaultDeliveryTimeout = 15 * time.Second
)

// DefaultDeliveryRetrySchedule is the dev-mode delay before each retry of a
// failed delivery: much shorter than Svix's (5 s, 5 min, 30 min, 2 h, ...)
// so a demo shows retries. Returned fresh so callers cannot alter it.
func DefaultDeliveryRetrySchedule() []time.Duration {
	return []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second}
}

// Config configures a Server. The zero value is usable: every field
// documents its default, applied by WithDefaults.
type Config struct {
	// Tokens are the bearer tokens accepted on /api/v1 (health excepted).
	// Any other token, or none, is answered 401 authentication_failed.
	// Default: []string{DefaultToken}.
	Tokens []string

	// ForbiddenTokens are recognised but lack access: answered 403
	// "insufficient access" (an app-scoped token on an org route in Svix).
	// Default: none.
	ForbiddenTokens []string

	// MaxBodyBytes is the largest request body accepted; larger bodies are
	// answered 413 payload_too_large. Default: DefaultMaxBodyBytes (1 MiB).
	MaxBodyBytes int64

	// IdempotencyTTL is how long the first 2xx answer to a POST carrying an
	// idempotency-key is replayed. Default: DefaultIdempotencyTTL (12 h).
	IdempotencyTTL time.Duration

	// EventIDTTL is how long a message's eventId makes a second create
	// with that eventId in the same app answer 409 conflict. After it, a
	// create with the eventId makes a new message (as hosted Svix, which
	// remembers eventIds for about a day); a GET by the eventId still finds
	// the first message. Default 0: remembered forever, as the open-source
	// server does.
	EventIDTTL time.Duration

	// MessageRetention is how long an accepted message is kept in memory.
	// An older one is forgotten whole: Messages, AllMessages and lookups by
	// id or eventId no longer find it, and its eventId no longer answers
	// 409. MessageCount and OnMessage still count every message. A long run
	// (make soak) sets it, with a short IdempotencyTTL, so that the fake's
	// memory stays bounded. Default 0: kept forever.
	MessageRetention time.Duration

	// OnMessage, when set, is called once for each accepted message, after
	// it is stored and outside every lock, in the goroutine serving the
	// create. It must be safe for concurrent use and must not modify the
	// payload. Default: nil.
	OnMessage func(Message)

	// MaxRecordedRequests bounds the log returned by Server.Requests; the
	// oldest entries are dropped first. Negative disables the log (status
	// counters still work), which a benchmark may want.
	// Default: DefaultMaxRecordedRequests.
	MaxRecordedRequests int

	// Now is the clock used for message timestamps, idempotency expiry,
	// outage windows and the rate limiter. Webhook signatures in DevMode
	// always use the wall clock, since receivers check them against theirs.
	// Default: time.Now.
	Now func() time.Time

	// Logger receives one debug line per request (never the token or the
	// body) and delivery failures. It is named "svixfake".
	// Default: zap.NewNop().
	Logger *zap.Logger

	// DevMode makes the fake deliver every accepted message to the
	// endpoints of its application that subscribe to its event type, signed
	// like Svix does. Default: false.
	DevMode bool

	// DeliveryRetrySchedule is the delay before each retry of a failed
	// DevMode delivery; attempts = 1 + len(schedule). A non-nil empty slice
	// means a single attempt. Default: DefaultDeliveryRetrySchedule().
	DeliveryRetrySchedule []time.Duration

	// DeliveryTimeout bounds one DevMode delivery attempt.
	// Default: DefaultDeliveryTimeout (15 s).
	DeliveryTimeout time.Duration

	// DeliveryClient sends DevMode deliveries. Default: a private client
	// whose idle connections are closed by Server.Close.
	DeliveryClient *http.Client
}

// WithDefaults returns a copy of c with every zero field set to its
// documented default.
func (c Config) WithDefaults() Config {
	if len(c.Tokens) == 0 {
		c.Tokens = []string{DefaultToken}
	}
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, DefaultMaxBodyBytes)
	c.IdempotencyTTL = cmp.Or(c.IdempotencyTTL, DefaultIdempotencyTTL)
	c.MaxRecordedRequests = cmp.Or(c.MaxRecordedRequests, DefaultMaxRecordedRequests)
	c.DeliveryTimeout = cmp.Or(c.DeliveryTimeout, DefaultDeliveryTimeout)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.DeliveryRetrySchedule == nil {
		c.DeliveryRetrySchedule = DefaultDeliveryRetrySchedule()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	seen := make(map[string]bool, len(c.Tokens))
	for i, tok := range c.Tokens {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			// Never echo the token itself.
			errs = append(errs, fmt.Errorf("field Tokens[%d]: must be non-empty without whitespace", i))
		}
		seen[tok] = true
	}
	for i, tok := range c.ForbiddenTokens {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			errs = append(errs, fmt.Errorf("field ForbiddenTokens[%d]: must be non-empty without whitespace", i))
		}
		if seen[tok] {
			errs = append(errs, fmt.Errorf("field ForbiddenTokens[%d]: also listed in Tokens", i))
		}
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("field MaxBodyBytes: must be positive, got %d", c.MaxBodyBytes))
	}
	if c.MessageRetention < 0 {
		errs = append(errs, fmt.Errorf("field MessageRetention: must not be negative, got %s", c.MessageRetention))
	}
	if c.EventIDTTL < 0 {
		errs = append(errs, fmt.Errorf("field EventIDTTL: must not be negative, got %s", c.EventIDTTL))
	}
	if c.IdempotencyTTL < 0 {
		errs = append(errs, fmt.Errorf("field IdempotencyTTL: must be positive, got %s", c.IdempotencyTTL))
	}
	if c.DeliveryTimeout < 0 {
		errs = append(errs, fmt.Errorf("field DeliveryTimeout: must be positive, got %s", c.DeliveryTimeout))
	}
	for i, d := range c.DeliveryRetrySchedule {
		if d < 0 {
			errs = append(errs, fmt.Errorf("field DeliveryRetrySchedule[%d]: must not be negative, got %s", i, d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("svixfake config: %w", err)
	}
	return nil
}
