package live

import (
	"cmp"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// Config configures a Handler. Zero fields take the documented defaults;
// negative ones are refused by New.
type Config struct {
	// DB is the migrated relay database (required). The Handler keeps one
	// connection of it for LISTEN (none in PollOnly mode) and runs one
	// query at a time to read new rows, whatever the number of streams;
	// replays on reconnect take at most MaxConcurrentReplays more.
	DB *pgxpool.Pool
	// Secret verifies live tokens (HS256); at least MinSecretBytes.
	Secret []byte
	// Logger receives one line per stream end and warnings; default no-op.
	Logger *zap.Logger

	// Heartbeat is the longest silence on a stream: a comment line is
	// sent this often so that proxies keep idle streams. Default 15s.
	Heartbeat time.Duration
	// Retry is the reconnection delay suggested to EventSource (the
	// "retry:" field). Default 2s.
	Retry time.Duration
	// WriteTimeout bounds each write to a stream: a client that does not
	// take an event within it is disconnected. Idle streams are never cut
	// by it. Default 10s.
	WriteTimeout time.Duration
	// Buffer is how many events a stream may have waiting; a stream that
	// falls further behind is disconnected and resumes from its cursor.
	// Default 64 (a pointer each: 512 bytes a stream). A burst of more
	// rows than this for one account within one read cuts its streams,
	// which then catch up by replay.
	Buffer int
	// MaxStreamsPerApp caps the concurrent streams of one account (one per
	// open tab); above it a stream is answered 429. Default 100.
	MaxStreamsPerApp int
	// ReplayLimit is the most rows a reconnecting stream replays; a
	// cursor further behind gets a reset event. Default 1,000.
	ReplayLimit int
	// MaxConcurrentReplays bounds the replay queries running at once (a
	// reconnection storm after a restart queues here). Default 4.
	MaxConcurrentReplays int
	// PollInterval is how often new rows are looked for when no
	// notification came: the fallback with LISTEN (default 1s), the only
	// wake-up with PollOnly (default 250ms).
	PollInterval time.Duration
	// PollOnly reads by polling alone, without LISTEN: for PgBouncer in
	// transaction pooling mode, which cannot LISTEN.
	PollOnly bool
	// NoSequencer leaves numbering committed rows (commit_seq) to other
	// processes. By default the Handler runs a sequencer step whenever the
	// outbox notifies (and on every poll), so the stream works with relay
	// run stopped.
	NoSequencer bool
	// AllowedOrigins are the first-party origins (scheme://host[:port])
	// that may call the stream and the session endpoint from a browser,
	// with credentials (CORS). Empty: same-origin pages only.
	AllowedOrigins []string
	// InsecureCookie drops the Secure attribute from the session cookie,
	// for local development over plain http only.
	InsecureCookie bool
}

func (c Config) withDefaults() Config {
	c.Heartbeat = cmp.Or(c.Heartbeat, 15*time.Second)
	c.Retry = cmp.Or(c.Retry, 2*time.Second)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, 10*time.Second)
	c.Buffer = cmp.Or(c.Buffer, 64)
	c.MaxStreamsPerApp = cmp.Or(c.MaxStreamsPerApp, 100)
	c.ReplayLimit = cmp.Or(c.ReplayLimit, 1000)
	c.MaxConcurrentReplays = cmp.Or(c.MaxConcurrentReplays, 4)
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
		if c.PollOnly {
			c.PollInterval = 250 * time.Millisecond
		}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.DB == nil:
		return fmt.Errorf("live: Config.DB is required")
	case len(c.Secret) < MinSecretBytes:
		return ErrShortSecret
	case c.Heartbeat < 0:
		return fmt.Errorf("live: Heartbeat must be positive, got %s", c.Heartbeat)
	case c.Retry < 0:
		return fmt.Errorf("live: Retry must be positive, got %s", c.Retry)
	case c.WriteTimeout < 0:
		return fmt.Errorf("live: WriteTimeout must be positive, got %s", c.WriteTimeout)
	case c.Buffer < 1:
		return fmt.Errorf("live: Buffer must be at least 1, got %d", c.Buffer)
	case c.MaxStreamsPerApp < 1:
		return fmt.Errorf("live: MaxStreamsPerApp must be at least 1, got %d", c.MaxStreamsPerApp)
	case c.ReplayLimit < 1:
		return fmt.Errorf("live: ReplayLimit must be at least 1, got %d", c.ReplayLimit)
	case c.MaxConcurrentReplays < 1:
		return fmt.Errorf("live: MaxConcurrentReplays must be at least 1, got %d", c.MaxConcurrentReplays)
	case c.PollInterval < 0:
		return fmt.Errorf("live: PollInterval must be positive, got %s", c.PollInterval)
	}
	for _, o := range c.AllowedOrigins {
		if err := ValidateOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

// ValidateOrigin accepts an origin "scheme://host[:port]" written exactly
// as browsers send it in the Origin header.
func ValidateOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil || o != strings.ToLower(u.Scheme)+"://"+u.Host {
		return fmt.Errorf("live: allowed origin %q must be scheme://host[:port], e.g. https://app.example.com", o)
	}
	return nil
}
