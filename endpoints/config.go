package endpoints

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/apikey"
)

// DB runs queries: a pgxpool.Pool in practice. The handler uses the
// api_idempotency table, the event catalog (outbox_event_type) and, with
// the built-in authenticator, api_key; `relay migrate` creates them.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Config configures the handler. Zero values take the documented defaults.
type Config struct {
	// DB is the relay's database. Required.
	DB DB
	// SvixToken is the Svix API token. Required; it is sent only in the
	// Authorization header of calls to Svix.
	SvixToken string
	// SvixServerURL is the Svix API base URL (self-hosted Svix, a local dev
	// server). Default: Svix's hosted API for the token's region.
	SvixServerURL string
	// Authenticator tells which account a request acts for. Default: the
	// API keys of the api_key table (apikey.NewStore(DB)).
	Authenticator apikey.Authenticator
	// Logger receives one line per request and failures. Default: none.
	Logger *zap.Logger
	// AllowInsecureURLs accepts http:// URLs, localhost and private,
	// loopback and link-local addresses, for local development only.
	// Default false: https only, public hosts only.
	AllowInsecureURLs bool
	// RateLimit is the requests per second allowed per API key (a token
	// bucket of RateBurst). Default 20; negative for no limit.
	RateLimit float64
	// RateBurst is how many requests a key may send at once. Default 40.
	RateBurst int
	// SvixTimeout bounds one call to Svix. Default 10s.
	SvixTimeout time.Duration
	// RequestTimeout bounds the Svix work of one request (a create makes up
	// to 5 calls, and registers the event types first on its first use).
	// Default 25s; keep the server's write timeout above it.
	RequestTimeout time.Duration
	// IdempotencyTTL is how long a POST's Idempotency-Key and its first
	// answer are kept. Default 24h.
	IdempotencyTTL time.Duration
}

// Defaults.
const (
	DefaultRateLimit      = 20
	DefaultRateBurst      = 40
	DefaultSvixTimeout    = 10 * time.Second
	DefaultRequestTimeout = 25 * time.Second
	DefaultIdempotencyTTL = 24 * time.Hour
)

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.Authenticator == nil && c.DB != nil {
		c.Authenticator = apikey.NewStore(c.DB)
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	c.RateLimit = cmp.Or(c.RateLimit, DefaultRateLimit)
	c.RateBurst = cmp.Or(c.RateBurst, DefaultRateBurst)
	c.SvixTimeout = cmp.Or(c.SvixTimeout, DefaultSvixTimeout)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.IdempotencyTTL = cmp.Or(c.IdempotencyTTL, DefaultIdempotencyTTL)
	return c
}

func (c Config) validate() error {
	switch {
	case c.DB == nil:
		return errors.New("endpoints: Config.DB is required")
	case c.SvixToken == "":
		return errors.New("endpoints: Config.SvixToken is required")
	case c.RateBurst < 1:
		return fmt.Errorf("endpoints: Config.RateBurst must be at least 1, got %d", c.RateBurst)
	case c.SvixTimeout < 0 || c.RequestTimeout < 0 || c.IdempotencyTTL < 0:
		return errors.New("endpoints: Config.SvixTimeout, RequestTimeout and IdempotencyTTL must not be negative")
	case c.RequestTimeout < c.SvixTimeout:
		return fmt.Errorf("endpoints: Config.RequestTimeout (%s) must be at least SvixTimeout (%s)", c.RequestTimeout, c.SvixTimeout)
	}
	return nil
}
