package demo

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

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
