package main

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/alecthomas/kong"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/mediaplatform/relay/internal/logging"
)

// CLI is the relay's command line. Every setting is a flag and an
// environment variable.
type CLI struct {
	Globals

	Migrate     MigrateCmd     `cmd:"" help:"Apply the outbox and River migrations (needs only DATABASE_URL)."`
	Run         RunCmd         `cmd:"" help:"Deliver outbox rows to Svix until SIGTERM or SIGINT."`
	Serve       ServeCmd       `cmd:"" help:"Serve the public HTTP API (/v1/webhook-endpoints) until SIGTERM or SIGINT."`
	LiveToken   LiveTokenCmd   `cmd:"" name:"live-token" help:"Mint a token for an account's live stream (GET /v1/live); prints it as the last line."`
	APIKey      APIKeyCmd      `cmd:"" name:"api-key" help:"Manage the public API's keys: create, list, revoke."`
	Demo        DemoCmd        `cmd:"" help:"Run the whole flow locally (make demo): migrations, the relay, a dev Svix server and a receiver verifying every signed webhook. Logs go to stderr at warn level in the console format unless --log-level or --log-format is given."`
	Status      StatusCmd      `cmd:"" help:"Show the outbox: rows by state, the oldest undelivered row, the latest failures (--json for scripts)."`
	Replay      ReplayCmd      `cmd:"" help:"Hand rows back to the relay: one (--id) or a selection (--failed, --failed-since, --event-type, --app; --force-resend with --delivered-since); --dry-run shows what would happen."`
	Prune       PruneCmd       `cmd:"" help:"Delete delivered rows past the retention, or failed rows (--failed-before), in small batches; --dry-run counts."`
	Svix        SvixCmd        `cmd:"" help:"Svix utilities: svix sync registers the event types."`
	Healthcheck HealthcheckCmd `cmd:"" help:"Probe a running relay's /readyz (a container health check); exit 0 when ready."`
	Version     VersionCmd     `cmd:"" help:"Print the version."`
}

// Globals are settings every command shares.
type Globals struct {
	DatabaseURL string `name:"database-url" env:"DATABASE_URL" placeholder:"URL" help:"PostgreSQL connection URL; set search_path in it (?search_path=relay) to keep the relay out of public."`
	LogFormat   string `name:"log-format" env:"RELAY_LOG_FORMAT" default:"json" help:"Log format: json or console."`
	LogLevel    string `name:"log-level" env:"RELAY_LOG_LEVEL" default:"info" help:"Log level: debug, info, warn or error."`
	// DatabaseLabel tells the relays of a sharded product apart.
	DatabaseLabel string `name:"database-label" env:"RELAY_DATABASE_LABEL" placeholder:"NAME" help:"Name of the database in the label database of every metric and the field database of every log line, to tell one relay deployment per database apart; default: the database name in DATABASE_URL."`
}

// usageError is a missing or invalid setting: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// exitCode ends the process with a code after the command printed its
// own message.
type exitCode int

func (e exitCode) Error() string { return "exit " + strconv.Itoa(int(e)) }

// Validate checks the shared settings (exit code 2, naming the variable).
func (g *Globals) Validate() error {
	switch {
	case g.LogFormat != "json" && g.LogFormat != "console":
		return usagef("RELAY_LOG_FORMAT (--log-format) must be json or console, got %q", g.LogFormat)
	case g.LogLevel != "debug" && g.LogLevel != "info" && g.LogLevel != "warn" && g.LogLevel != "error":
		return usagef("RELAY_LOG_LEVEL (--log-level) must be debug, info, warn or error, got %q", g.LogLevel)
	}
	return g.checkDatabaseLabel()
}

// parse parses args; commands receive ctx as their context.Context. opts
// are added to the parser's (tests redirect its output).
func parse(ctx context.Context, args []string, opts ...kong.Option) (*CLI, *kong.Context, error) {
	var cli CLI
	parser, err := kong.New(&cli, append([]kong.Option{
		kong.Name("relay"),
		kong.Description("relay turns committed outbox rows into Svix messages, exactly once per row.\n\n" +
			"Every flag can also be set with the environment variable shown beside it. " +
			"Secrets are read from the environment and never printed."),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Exit(func(code int) { panic(exitCode(code)) }),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.Help(helpPrinter),
	}, opts...)...)
	if err != nil {
		return nil, nil, err
	}
	kctx, err := parseRecovering(parser, args)
	if err != nil {
		return nil, nil, err
	}
	return &cli, kctx, nil
}

// parseRecovering turns kong's exit after --help into an exitCode error.
func parseRecovering(parser *kong.Kong, args []string) (kctx *kong.Context, err error) {
	defer func() {
		if r := recover(); r != nil {
			code, ok := r.(exitCode)
			if !ok {
				panic(r)
			}
			err = code
		}
	}()
	return parser.Parse(args)
}

func (g *Globals) logger() (*zap.Logger, error) {
	log, err := logging.New(g.LogFormat, g.LogLevel)
	if err != nil {
		return nil, usagef("%v", err)
	}
	return g.withDatabaseField(log), nil
}

// applicationName is the application_name of the relay's connections when
// DATABASE_URL sets none.
const applicationName = "relay"

// pool opens the database named by DATABASE_URL (maxConns 0: pgx's default).
func (g *Globals) pool(ctx context.Context, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := g.poolConfig(maxConns)
	if err != nil {
		return nil, err
	}
	return openPool(ctx, cfg)
}

// poolConfig parses DATABASE_URL into a pool configuration.
func (g *Globals) poolConfig(maxConns int32) (*pgxpool.Config, error) {
	if g.DatabaseURL == "" {
		return nil, usagef("DATABASE_URL (--database-url) is required: a PostgreSQL URL such as postgres://user@localhost:5432/db")
	}
	cfg, err := pgxpool.ParseConfig(g.DatabaseURL)
	if err != nil {
		return nil, usagef("DATABASE_URL (--database-url) is not a valid PostgreSQL URL: %v", err) // pgx shows the password as xxxxx
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	// Name the connections in pg_stat_activity (each connection of the
	// relay, the listeners outside the pool included, copies this config),
	// unless the URL names them itself.
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set {
		cfg.ConnConfig.RuntimeParams["application_name"] = applicationName
	}
	return cfg, nil
}

func openPool(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// VersionCmd prints the version.
type VersionCmd struct{}

// Run prints the module version recorded by the Go toolchain.
func (VersionCmd) Run() error {
	fmt.Fprintln(os.Stdout, "relay", version())
	return nil
}
