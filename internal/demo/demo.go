package demo

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/dispatch"
	"github.com/mediaplatform/relay/internal/msgkey"
	"github.com/mediaplatform/relay/internal/svixfake"
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

// ServeConfig configures ServeSvix. Zero values take the documented
// defaults.
type ServeConfig struct {
	// SvixAddr is where the dev Svix server listens. Default
	// "127.0.0.1:8071".
	SvixAddr string
	// ReceiverAddr is where the receiver listens. Default "127.0.0.1:0".
	ReceiverAddr string
	// Out receives the instructions and the table. Default os.Stdout.
	Out io.Writer
	// Logger receives the dev server's logs. Default: no logs.
	Logger *zap.Logger
}

// ServeSvix runs the dev Svix server and the verifying receiver until ctx
// ends, printing how to point `relay run` at them and every delivery.
func ServeSvix(ctx context.Context, cfg ServeConfig) error {
	cfg.SvixAddr = cmp.Or(cfg.SvixAddr, "127.0.0.1:8071")
	cfg.ReceiverAddr = cmp.Or(cfg.ReceiverAddr, "127.0.0.1:0")
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	dev, err := startDevSvix(ctx, devSvixConfig{svixAddr: cfg.SvixAddr, receiverAddr: cfg.ReceiverAddr, log: cfg.Logger})
	if err != nil {
		return err
	}
	defer dev.close()

	out := cfg.Out
	fmt.Fprintf(out, "relay demo --svix-only: a dev Svix server and a verifying receiver (no database, no relay).\n")
	fmt.Fprintf(out, "  dev Svix  %s (internal/svixfake in dev mode): signs each message, delivers it, retries failures\n", dev.URL())
	fmt.Fprintf(out, "  receiver  %s: svix.NewWebhook(secret).Verify on every delivery, deduplicated on svix-id\n", dev.recv.URL("{"+strings.Join(Apps, ",")+"}"))
	fmt.Fprintf(out, "\nIn another terminal, with DATABASE_URL set, run the relay against it:\n")
	fmt.Fprintf(out, "  export SVIX_SERVER_URL=%s SVIX_AUTH_TOKEN=%s\n  relay migrate && relay run\n", dev.URL(), Token)
	fmt.Fprintf(out, "then commit outbox rows for app %s, e.g.\n  %s\n\n", strings.Join(Apps, " or "), psqlInsert(`"$DATABASE_URL"`, ""))

	w := newWatcher(dev, printer{out}, nil, nil)
	w.print.header()
	for {
		select {
		case d := <-dev.recv.C():
			w.handle(d)
		case m := <-dev.unrouted:
			w.unrouted(m)
		case <-ctx.Done():
			return nil
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

// watcher joins deliveries with the rows they came from, prints them and
// keeps the tally in report (nil: print only).
type watcher struct {
	dev     *devSvix
	print   printer
	report  *Report
	commits map[int64]Emitted  // every row the demo committed, by id
	pending map[int64]Emitted  // committed rows not yet verified
	lostAck map[string]Receipt // processed with a lost ack, until Svix redelivers
}

func newWatcher(dev *devSvix, p printer, report *Report, expected []Emitted) *watcher {
	w := &watcher{dev: dev, print: p, report: report,
		commits: make(map[int64]Emitted), pending: make(map[int64]Emitted), lostAck: make(map[string]Receipt)}
	for _, e := range expected {
		w.commits[e.RowID], w.pending[e.RowID] = e, e
	}
	return w
}

func (w *watcher) done() bool { return len(w.pending) == 0 && len(w.lostAck) == 0 }

func (w *watcher) handle(d Delivery) {
	r := Receipt{Delivery: d}
	if m, ok := w.dev.message(d.App, d.SvixID); ok {
		r.EventID, r.IdempotencyKey = m.EventID, m.IdempotencyKey
		if id, created, _, ok := msgkey.Parse(m.EventID); ok {
			r.RowID = id
			if e, ok := w.commits[id]; ok {
				r.Latency = d.ReceivedAt.Sub(e.CommittedAt)
			} else {
				r.Latency, r.Approx = d.ReceivedAt.Sub(created), true
			}
		}
	}
	w.print.row(r)
	if w.report == nil { // serving only: nothing to check, nothing to keep
		return
	}
	w.report.Receipts = append(w.report.Receipts, r)

	switch {
	case d.Duplicate:
		delete(w.lostAck, d.SvixID)
	case d.Processed:
		if d.Fault == FaultLoseAck {
			w.lostAck[d.SvixID] = r
		}
		e, ok := w.pending[r.RowID]
		if !ok {
			return
		}
		if problem := mismatch(e, d); problem != "" {
			w.report.Mismatched = append(w.report.Mismatched, problem)
			fmt.Fprintf(w.print.w, "        ^ %s\n", problem)
			return
		}
		if d.Err == "" {
			delete(w.pending, r.RowID)
		}
	}
}

// mismatch compares a delivery with the row it came from, by JSON value.
func mismatch(e Emitted, d Delivery) string {
	if d.Type != string(e.Type) {
		return fmt.Sprintf("row %d was written as %s but delivered as %s", e.RowID, e.Type, d.Type)
	}
	var want, got any
	if decodeNumbers(e.Data, &want) != nil || decodeNumbers(d.Data, &got) != nil || !reflect.DeepEqual(want, got) {
		return fmt.Sprintf("row %d: data written %s, delivered %s", e.RowID, e.Data, d.Data)
	}
	return ""
}

func decodeNumbers(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// unrouted tells about a message of an app without an endpoint.
func (w *watcher) unrouted(m svixfake.Message) {
	row := "a message"
	if id, _, _, ok := msgkey.Parse(m.EventID); ok {
		row = fmt.Sprintf("row %d", id)
	}
	fmt.Fprintf(w.print.w, "  note: %s (%s) was accepted by Svix as %s, but app %q has no endpoint, so it is delivered nowhere; use app %s\n",
		row, m.EventType, m.ID, cmp.Or(m.AppUID, m.AppID), strings.Join(Apps, " or "))
}

// fail records the missing rows, prints the failing summary and returns
// the error.
func (w *watcher) fail(when string) error {
	var missing []string
	for _, id := range slices.Sorted(maps.Keys(w.pending)) {
		e := w.pending[id]
		w.report.Missing = append(w.report.Missing, e)
		missing = append(missing, fmt.Sprintf("row %d (%s, %s)", id, e.Type, e.App))
	}
	for id := range w.lostAck {
		missing = append(missing, "the redelivery of "+id)
	}
	n := len(w.commits)
	msg := fmt.Sprintf("%d of %d events verified %s; missing: %s", n-len(w.pending), n, when, strings.Join(missing, ", "))
	if len(w.report.Mismatched) > 0 {
		// A delivery that arrived but differs from its row is the cause,
		// not a lost one.
		msg += "; delivered but different from the row: " + strings.Join(w.report.Mismatched, "; ")
	}
	fmt.Fprintf(w.print.w, "\nFAIL  %s\n", msg)
	return errors.New(msg)
}

// summary is the closing line of a successful run.
func (w *watcher) summary() string {
	r := w.report
	retried, duplicates := 0, 0
	for _, rc := range r.Receipts {
		if rc.Fault == FaultRefuse {
			retried++
		}
		if rc.Duplicate {
			duplicates++
		}
	}
	var pgErr *pgconn.PgError
	refused := "refused"
	if errors.As(r.Refused, &pgErr) {
		refused += " (" + pgErr.ConstraintName + ")"
	}
	n := len(r.Expected)
	return fmt.Sprintf("OK  %d of %d events delivered once, signed and verified, %s after the first commit "+
		"(%d retried after a 503, %d duplicate delivery ignored); all %d outbox rows marked delivered with their Svix message ids; "+
		"rolled-back row %d never delivered; invalid insert %s.",
		n, n, r.Elapsed.Round(time.Millisecond), retried, duplicates, n, r.RolledBack.RowID, refused)
}

// deliveredSQL reads the relay's outcome of rows.
const deliveredSQL = `
SELECT id, svix_message_id FROM outbox
 WHERE id = ANY($1) AND delivered_at IS NOT NULL AND failed_at IS NULL AND svix_message_id IS NOT NULL`

// waitMarked waits until the relay has recorded every expected row as
// delivered, with the message id the receiver saw.
func waitMarked(ctx context.Context, pool *pgxpool.Pool, r *Report, deadline <-chan time.Time) error {
	ids := make([]int64, len(r.Expected))
	for i, e := range r.Expected {
		ids[i] = e.RowID
	}
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		rows, err := pool.Query(ctx, deliveredSQL, ids)
		if err != nil {
			return fmt.Errorf("read outbox outcomes: %w", err)
		}
		marked := make(map[int64]string)
		var id int64
		var msgID string
		_, err = pgx.ForEachRow(rows, []any{&id, &msgID}, func() error { marked[id] = msgID; return nil })
		if err != nil {
			return fmt.Errorf("read outbox outcomes: %w", err)
		}
		var unmarked []string
		for _, e := range r.Expected {
			rc, _ := r.Verified(e.RowID)
			if got, ok := marked[e.RowID]; !ok || got != rc.SvixID {
				unmarked = append(unmarked, fmt.Sprintf("row %d (svix_message_id %q, delivered %q)", e.RowID, got, rc.SvixID))
			}
		}
		if len(unmarked) == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline:
			return fmt.Errorf("outbox rows not marked delivered with the delivered message id: %s", strings.Join(unmarked, ", "))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// openPool opens a pool on dbURL whose connections use schemaName, when
// given, as their search_path.
func openPool(ctx context.Context, dbURL, schemaName string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	cfg.MaxConns = 20 // the relay (River, its listener, the feeder, workers) and the demo's writes
	if schemaName != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schemaName}.Sanitize() // keeps case and quotes
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// prepareSchema creates schemaName when given and absent, and returns the
// schema the connections use.
func prepareSchema(ctx context.Context, pool *pgxpool.Pool, schemaName string) (string, error) {
	if schemaName != "" {
		_, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schemaName}.Sanitize())
		var pgErr *pgconn.PgError
		// Two demos creating it at once: one of them gets a duplicate error.
		if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "42P06" || pgErr.Code == "23505")) {
			return "", fmt.Errorf("create schema %s: %w", schemaName, err)
		}
	}
	var current *string
	if err := pool.QueryRow(ctx, `SELECT current_schema()`).Scan(&current); err != nil {
		return "", fmt.Errorf("read current schema: %w", err)
	}
	if current == nil {
		return "", errors.New("no schema of the connection's search_path exists: create one, or name one to create")
	}
	return *current, nil
}

// lockSchema takes a session advisory lock so that two demos never drain
// one schema's outbox into two dev servers; the returned func releases it.
func lockSchema(ctx context.Context, pool *pgxpool.Pool, schemaName string) (func(), error) {
	const lockSQL = `SELECT pg_try_advisory_lock(hashtextextended('relay.demo:' || $1, 0))`
	const unlockSQL = `SELECT pg_advisory_unlock(hashtextextended('relay.demo:' || $1, 0))`
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquire connection for the demo lock: %w", err)
	}
	var locked bool
	if err := conn.QueryRow(ctx, lockSQL, schemaName).Scan(&locked); err != nil {
		conn.Release()
		return nil, fmt.Errorf("take the demo lock on schema %s: %w", schemaName, err)
	}
	if !locked {
		conn.Release()
		return nil, fmt.Errorf("another relay demo is running on schema %s: stop it or choose another schema", schemaName)
	}
	return func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), unlockSQL, schemaName); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx)) // the server drops the lock with the session
		}
		conn.Release()
	}, nil
}

// newTag returns a short random tag that keeps one run's ids apart from
// another's.
func newTag() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// qualified names a table of schemaName, quoting only when needed.
func qualified(schemaName, table string) string {
	if plainIdent.MatchString(schemaName) {
		return schemaName + "." + table
	}
	return pgx.Identifier{schemaName, table}.Sanitize()
}

// psqlInsert is a psql command committing one valid row to the outbox of
// schemaName (empty: the session's search_path), with the producer
// contract's INSERT. It sets search_path rather than qualifying the table:
// the outbox's trigger functions find their tables through it.
func psqlInsert(target, schemaName string) string {
	set := ""
	if schemaName != "" {
		ident := schemaName
		if !plainIdent.MatchString(schemaName) {
			ident = pgx.Identifier{schemaName}.Sanitize()
		}
		set = " -c " + shellQuote("SET search_path TO "+ident)
	}
	return fmt.Sprintf(`psql %s%s -c "INSERT INTO outbox (app_id, event_type, data) VALUES ('%s', 'render.completed', jsonb_build_object('entity_id', 'render_42', 'asset_id', 'asset_42'))"`,
		target, set, Apps[0])
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// psqlTarget is dbURL as a psql argument: without the parameters psql does
// not know (search_path, pgx's pool_*), its password hidden, quoted for a
// POSIX shell. A key=value DSN is referred to as "$DATABASE_URL".
func psqlTarget(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return `"$DATABASE_URL"`
	}
	q := u.Query()
	for k := range q {
		if k == "search_path" || strings.HasPrefix(k, "pool_") {
			q.Del(k)
		}
	}
	u.RawQuery = q.Encode()
	return shellQuote(redacted(u))
}

// redactURL hides the secrets of a database URL.
func redactURL(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		return "(DATABASE_URL)"
	}
	return redacted(u)
}

// secretParams are the connection parameters that carry a secret: libpq
// and pgx read a password from the query string as well as from the
// user-info part, which url.URL.Redacted leaves alone.
var secretParams = []string{"password", "sslpassword"}

// redacted is u as text with the user-info password and every secret query
// parameter replaced by xxxxx.
func redacted(u *url.URL) string {
	c := *u
	q := c.Query()
	changed := false
	for k := range q {
		if slices.Contains(secretParams, strings.ToLower(k)) {
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		c.RawQuery = q.Encode()
	}
	return c.Redacted()
}
