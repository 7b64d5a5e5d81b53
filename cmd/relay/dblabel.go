package main

import (
	"cmp"
	"strings"
	"unicode"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// maxDatabaseLabel is the longest RELAY_DATABASE_LABEL accepted.
const maxDatabaseLabel = 128

// databaseLabel is what tells the relays of a sharded product apart: the
// label `database` on every metric and the field `database` on every log
// line. It is RELAY_DATABASE_LABEL, or the database name DATABASE_URL
// connects to (never its host, user or password); "" when neither is
// known.
func (g *Globals) databaseLabel() string {
	if g.DatabaseLabel != "" {
		return g.DatabaseLabel
	}
	if g.DatabaseURL == "" {
		return ""
	}
	cfg, err := pgconn.ParseConfig(g.DatabaseURL)
	if err != nil {
		return ""
	}
	// PostgreSQL's own default: a database named after the user.
	return cmp.Or(cfg.Database, cfg.User)
}

// checkDatabaseLabel validates RELAY_DATABASE_LABEL (exit code 2).
func (g *Globals) checkDatabaseLabel() error {
	l := g.DatabaseLabel
	if l == "" {
		return nil
	}
	if len(l) > maxDatabaseLabel || strings.IndexFunc(l, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return usagef("RELAY_DATABASE_LABEL (--database-label) must be 1 to %d printable characters, got %q", maxDatabaseLabel, l)
	}
	return nil
}

// withDatabaseField adds the database label to every line log writes.
func (g *Globals) withDatabaseField(log *zap.Logger) *zap.Logger {
	if l := g.databaseLabel(); l != "" {
		return log.With(zap.String("database", l))
	}
	return log
}

// labelledRegisterer registers collectors with reg under the const label
// database, so that every metric the relay exports carries it.
func (g *Globals) labelledRegisterer(reg prometheus.Registerer) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"database": g.databaseLabel()}, reg)
}
