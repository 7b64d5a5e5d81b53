package demo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/schema"
)

// Config configures Run. Zero values take the documented defaults.
type Config struct {
	// DatabaseURL names the PostgreSQL database. Required.
	DatabaseURL string
	// Schema holds the demo's tables (the outbox, River's, renders) and is
	// created when absent. Empty means the first schema of the URL's
	// search_path, as given. Default: empty.
	Schema string
	// Timeout bounds the wait, after the last write, for every event to be
	// delivered, verified and marked delivered in the outbox. Default 30s.
	Timeout time.Duration
	// Follow keeps Run going after the summary, printing the delivery of
	// rows that anyone commits to the outbox (psql, say), until ctx ends.
	// Default false.
	Follow bool
	// SvixAddr is where the dev Svix server listens. Default "127.0.0.1:0"
	// (a free port).
	SvixAddr string
	// ReceiverAddr is where the receiver listens. Default "127.0.0.1:0".
	ReceiverAddr string
	// APIAddr is where the endpoint management API (what `relay serve`
	// serves) listens; the demo creates the receiver's endpoints through
	// it. Default "127.0.0.1:0".
	APIAddr string
	// Out receives the demo's story and its table. Default os.Stdout.
	Out io.Writer
	// Logger receives the relay's, River's and the dev server's logs.
	// Default: no logs.
	Logger *zap.Logger
}

// WithDefaults returns c with zero values replaced by defaults.
func (c Config) WithDefaults() Config {
	c.Timeout = cmp.Or(c.Timeout, 30*time.Second)
	c.SvixAddr = cmp.Or(c.SvixAddr, "127.0.0.1:0")
	c.ReceiverAddr = cmp.Or(c.ReceiverAddr, "127.0.0.1:0")
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.DatabaseURL == "":
		return errors.New("demo config: field DatabaseURL is required")
	case c.Timeout < 0:
		return fmt.Errorf("demo config: field Timeout must be positive, got %s", c.Timeout)
	}
	return nil
}

// Report is what a run wrote and saw.
type Report struct {
	// Schema is the schema the demo used.
	Schema string
	// Expected are the committed rows, each to be delivered and verified.
	Expected []Emitted
	// RolledBack is the row written in the transaction that rolled back.
	RolledBack Emitted
	// Refused is the database's refusal of the invalid insert, a
	// *pgconn.PgError.
	Refused error
	// Receipts are every delivery the receiver answered, in order.
	Receipts []Receipt
	// Missing are the expected rows not verified in time; Mismatched
	// describes rows delivered with another type or data than written.
	Missing    []Emitted
	Mismatched []string
	// Elapsed runs from the first write until every row was verified.
	Elapsed time.Duration
}

// Verified returns the receipt that processed row id, if any.
func (r *Report) Verified(id int64) (Receipt, bool) {
	for _, rc := range r.Receipts {
		if rc.RowID == id && rc.Processed {
			return rc, true
		}
	}
	return Receipt{}, false
}

// Run runs the demo: see the package documentation. It returns an error
// when an expected event is not verified within cfg.Timeout or ctx ends
// first; with cfg.Follow, it returns nil once ctx ends after the summary.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	out := cfg.Out

	pool, err := openPool(ctx, cfg.DatabaseURL, cfg.Schema)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	schemaName, err := prepareSchema(ctx, pool, cfg.Schema)
	if err != nil {
		return nil, err
	}
	unlock, err := lockSchema(ctx, pool, schemaName)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := schema.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	if err := createRenders(ctx, pool); err != nil {
		return nil, err
	}
	report := &Report{Schema: schemaName}

	sc := newScript(newTag())
	dev, err := startDevSvix(ctx, devSvixConfig{svixAddr: cfg.SvixAddr, receiverAddr: cfg.ReceiverAddr, faults: sc.faults, log: cfg.Logger, noEndpoints: true})
	if err != nil {
		return nil, err
	}
	defer dev.close()
	api, err := startAPI(ctx, pool, dev.URL(), cfg.APIAddr, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer api.close()
	for _, app := range Apps {
		secret, err := api.subscribe(ctx, app, dev.recv.URL(app))
		if err != nil {
			return nil, err
		}
		if err := dev.subscribed(app, secret); err != nil {
			return nil, err
		}
	}

	page, err := startLivePage(ctx, pool, cfg.Logger)
	if err != nil {
		return nil, err
	}
	defer page.close()

	relay, err := newRelay(pool, dev.URL(), cfg.Logger)
	if err != nil {
		return nil, err
	}
	relayCtx, stopRelay := context.WithCancel(ctx)
	relayDone := make(chan struct{})
	var relayErr error
	go func() {
		defer close(relayDone)
		relayErr = relay.Run(relayCtx)
	}()
	defer func() {
		stopRelay()
		<-relayDone
	}()
	if err := waitReady(ctx, relay, relayDone); err != nil {
		return nil, err
	}

	table := qualified(schemaName, "outbox")
	fmt.Fprintf(out, "relay demo: the whole flow in this process; nothing to sign up for.\n")
	fmt.Fprintf(out, "  database  %s, schema %s (migrated: outbox, River's tables, renders)\n", redactURL(cfg.DatabaseURL), schemaName)
	fmt.Fprintf(out, "  relay     draining %s (LISTEN/NOTIFY, polling every %s)\n", table, relayPoll)
	fmt.Fprintf(out, "  dev Svix  %s (internal/svixfake in dev mode, token %s): signs each message, delivers it, retries failures\n", dev.URL(), Token)
	fmt.Fprintf(out, "  receiver  %s: svix.NewWebhook(secret).Verify on every delivery, deduplicated on svix-id\n", dev.recv.URL("{"+strings.Join(Apps, ",")+"}"))
	fmt.Fprintf(out, "  API       %s/v1/webhook-endpoints (as relay serve): the receiver's endpoints were created through it with an API key per app; their secrets came from its answers\n", api.url)
	fmt.Fprintf(out, "  live page %s: a product page on the live stream (GET /v1/live) for %s; its backend set the session cookie (open it; make demo ARGS=--follow keeps it up)\n", page.url, liveApp)
	fmt.Fprintf(out, "\nA product service writes to its database:\n")

	prod, err := sc.run(ctx, pool, out)
	if err != nil {
		return report, err
	}
	report.Expected, report.RolledBack, report.Refused = prod.expected, prod.rolledBack, prod.refused
	firstWrite := prod.expected[0].CommittedAt

	fmt.Fprintf(out, "\nThe relay sends each committed row to Svix; Svix delivers it; the receiver verifies it:\n")
	w := newWatcher(dev, printer{out}, report, prod.expected)
	w.print.header()

	deadline := time.NewTimer(cfg.Timeout)
	defer deadline.Stop()
	for !w.done() {
		select {
		case d := <-dev.recv.C():
			w.handle(d)
		case m := <-dev.unrouted:
			w.unrouted(m)
		case <-relayDone:
			return report, fmt.Errorf("the relay stopped: %w", cmp.Or(relayErr, errors.New("no error")))
		case <-deadline.C:
			return report, w.fail(fmt.Sprintf("within %s", cfg.Timeout))
		case <-ctx.Done():
			return report, w.fail("before the demo was interrupted")
		}
	}
	report.Elapsed = time.Since(firstWrite)
	if err := waitMarked(ctx, pool, report, deadline.C); err != nil {
		return report, err
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, w.summary())
	if !cfg.Follow {
		return report, nil
	}

	fmt.Fprintf(out, "\nFollowing (Ctrl-C to stop): rows committed to %s by anyone are delivered to the receiver for apps %s. Try, in another terminal:\n  %s\n\n",
		table, strings.Join(Apps, " and "), psqlInsert(psqlTarget(cfg.DatabaseURL), schemaName))
	fmt.Fprintf(out, "The endpoint API answers too, with acme's API key (local, insecure endpoints allowed):\n")
	fmt.Fprintf(out, "  export API=%s API_KEY=%s\n", api.url, api.keys["acme"])
	fmt.Fprintf(out, "  curl -s $API/v1/webhook-endpoints -H \"Authorization: Bearer $API_KEY\"\n\n")
	for {
		select {
		case d := <-dev.recv.C():
			w.handle(d)
		case m := <-dev.unrouted:
			w.unrouted(m)
		case <-relayDone:
			return report, fmt.Errorf("the relay stopped: %w", cmp.Or(relayErr, errors.New("no error")))
		case <-ctx.Done():
			return report, nil
		}
	}
}

// The relay's settings in the demo: short timings so that a retry shows
// within a second and shutdown is quick.
const relayPoll = 250 * time.Millisecond

func newRelay(pool *pgxpool.Pool, svixURL string, log *zap.Logger) (*dispatch.Relay, error) {
	sender, err := dispatch.NewSvixSender(dispatch.SvixConfig{Token: Token, ServerURL: svixURL, Timeout: 5 * time.Second, MaxConns: 10})
	if err != nil {
		return nil, err
	}
	return dispatch.New(pool, sender, dispatch.Config{
		Concurrency:     10,
		JobTimeout:      10 * time.Second,
		RescueAfter:     20 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		BackoffMin:      100 * time.Millisecond,
		BackoffMax:      time.Second,
		PollInterval:    relayPoll,
		Logger:          log,
	})
}

// waitReady waits for the relay to run, so that the latencies measure
// delivery rather than start-up.
func waitReady(ctx context.Context, relay *dispatch.Relay, stopped <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if relay.Ready(ctx) == nil {
			return nil
		}
		select {
		case <-tick.C:
		case <-stopped:
			return errors.New("the relay stopped before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("wait for the relay to start: %w", ctx.Err())
		}
	}
}
