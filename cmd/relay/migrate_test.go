package main_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/pgtest"
)

// statusLine is one migration in `relay migrate status`.
type statusLine struct {
	line, version, name, state string
}

var statusRE = regexp.MustCompile(`^(outbox|river)\s+(\d+)\s+(.*\S)\s+(applied|pending)$`)

// parseStatus reads `relay migrate status`, failing on any line it does not
// recognise but the summary.
func parseStatus(t *testing.T, out string) []statusLine {
	t.Helper()
	var lines []statusLine
	for l := range strings.Lines(out) {
		l = strings.TrimSpace(l)
		if m := statusRE.FindStringSubmatch(l); m != nil {
			lines = append(lines, statusLine{m[1], m[2], m[3], m[4]})
			continue
		}
		if !regexp.MustCompile(`^\d+ applied, \d+ pending$`).MatchString(l) {
			t.Errorf("migrate status: unexpected line %q", l)
		}
	}
	return lines
}

// appliedRE matches a line of `relay migrate`: "applied outbox   1 outbox (1.2ms)".
var appliedRE = regexp.MustCompile(`^applied (outbox|river)\s+(\d+) (.+) \([^)]*\)$`)

func parseApplied(t *testing.T, out string) []statusLine {
	t.Helper()
	var lines []statusLine
	for l := range strings.Lines(out) {
		l = strings.TrimSpace(l)
		m := appliedRE.FindStringSubmatch(l)
		if m == nil {
			if l != "nothing to apply: the schema is up to date" {
				t.Errorf("migrate: unexpected line %q", l)
			}
			continue
		}
		lines = append(lines, statusLine{m[1], m[2], m[3], "applied"})
	}
	return lines
}

func TestMigrate(t *testing.T) {
	t.Parallel()

	t.Run("AppliesOnceThenNothing", func(t *testing.T) {
		t.Parallel()
		s := pgtest.NewSchema(t)
		env := relayEnv("DATABASE_URL=" + s.URL) // and nothing else: migrate needs no Svix settings

		code, before, stderr := relay(t, env, "migrate", "status")
		if code != 0 {
			t.Fatalf("migrate status on an empty schema: exit %d: %s", code, stderr)
		}
		pending := parseStatus(t, before)
		lines := map[string]int{}
		for _, l := range pending {
			lines[l.line]++
			if l.state != "pending" {
				t.Errorf("before migrate: %v, want pending", l)
			}
		}
		if lines["outbox"] == 0 || lines["river"] == 0 {
			t.Fatalf("migrate status lists %v migrations per line, want both outbox and river:\n%s", lines, before)
		}
		if !strings.Contains(before, "0 applied, ") {
			t.Errorf("migrate status summary on an empty schema:\n%s", before)
		}

		code, out, stderr := relay(t, env, "migrate")
		if code != 0 {
			t.Fatalf("migrate: exit %d: %s", code, stderr)
		}
		applied := parseApplied(t, out)
		if !sameMigrations(applied, pending) {
			t.Errorf("migrate applied\n%v\nwant every pending migration\n%v", applied, pending)
		}

		code, again, stderr := relay(t, env, "migrate")
		if code != 0 {
			t.Fatalf("second migrate: exit %d: %s", code, stderr)
		}
		if strings.TrimSpace(again) != "nothing to apply: the schema is up to date" {
			t.Errorf("second migrate printed %q, want that nothing was applied", again)
		}

		code, after, stderr := relay(t, env, "migrate", "status")
		if code != 0 {
			t.Fatalf("migrate status: exit %d: %s", code, stderr)
		}
		status := parseStatus(t, after)
		for _, l := range status {
			if l.state != "applied" {
				t.Errorf("after migrate: %v, want applied", l)
			}
		}
		if !sameMigrations(status, pending) {
			t.Errorf("status after migrate lists\n%v\nbefore\n%v", status, pending)
		}
	})

	t.Run("TwoAtOnce", func(t *testing.T) {
		t.Parallel()
		s := pgtest.NewSchema(t)
		env := relayEnv("DATABASE_URL=" + s.URL)

		a := start(t, "migrate A", env, "migrate")
		b := start(t, "migrate B", env, "migrate")
		codeA, codeB := a.wait(t, time.Minute), b.wait(t, time.Minute)
		if codeA != 0 || codeB != 0 {
			t.Fatalf("concurrent migrates exited %d and %d, want 0 and 0", codeA, codeB)
		}

		// Each migration was applied by exactly one of them.
		applied := append(parseApplied(t, a.stdout.String()), parseApplied(t, b.stdout.String())...)
		code, out, stderr := relay(t, env, "migrate", "status")
		if code != 0 {
			t.Fatalf("migrate status: exit %d: %s", code, stderr)
		}
		status := parseStatus(t, out)
		for _, l := range status {
			if l.state != "applied" {
				t.Errorf("after concurrent migrates: %v, want applied", l)
			}
		}
		if !sameMigrations(applied, status) {
			t.Errorf("the two migrates applied\n%v\nwant each migration once:\n%v", applied, status)
		}

		// One schema: each version recorded once.
		pool := s.Pool(t)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		for _, q := range []string{
			`SELECT count(*) - count(DISTINCT version_id) FROM outbox_schema_version`,
			`SELECT count(*) - count(DISTINCT (line, version)) FROM river_migration`,
		} {
			var dups int
			if err := pool.QueryRow(ctx, q).Scan(&dups); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if dups != 0 {
				t.Errorf("%s = %d, want every version recorded once", q, dups)
			}
		}
		var outboxVersions, riverVersions int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox_schema_version WHERE version_id > 0 AND is_applied`).Scan(&outboxVersions); err != nil {
			t.Fatal(err)
		}
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM river_migration`).Scan(&riverVersions); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{}
		for _, l := range status {
			want[l.line]++
		}
		if outboxVersions != want["outbox"] || riverVersions != want["river"] {
			t.Errorf("recorded %d outbox and %d river versions, status lists %v", outboxVersions, riverVersions, want)
		}
	})
}

// sameMigrations reports whether a and b list the same migrations (line and
// version), each once, in any order.
func sameMigrations(a, b []statusLine) bool {
	key := func(ls []statusLine) []string {
		var ks []string
		for _, l := range ls {
			ks = append(ks, l.line+" "+l.version)
		}
		slices.Sort(ks)
		return ks
	}
	return slices.Equal(key(a), key(b))
}

// On a fresh volume the database container takes a while to listen on TCP:
// relay migrate waits for it (RELAY_MIGRATE_WAIT), a bounded time.
func TestMigrateWaitsForDatabase(t *testing.T) {
	t.Parallel()
	cluster := pgtest.StartCluster(t)
	cluster.Stop(t)

	t.Run("GivesUpAfterTheWait", func(t *testing.T) {
		code, _, stderr := relay(t, relayEnv("DATABASE_URL="+cluster.URL, "RELAY_MIGRATE_WAIT=1s"), "migrate")
		if code != 1 || !strings.Contains(stderr, "RELAY_MIGRATE_WAIT") {
			t.Errorf("migrate with no server: exit %d, stderr %q; want 1 naming RELAY_MIGRATE_WAIT", code, stderr)
		}
	})

	t.Run("MigratesOnceTheServerListens", func(t *testing.T) {
		p := start(t, "relay migrate", relayEnv("DATABASE_URL="+cluster.URL, "RELAY_MIGRATE_WAIT=2m"), "migrate")
		waitFor(t, 30*time.Second, "migrate to say it waits", func() bool {
			return strings.Contains(p.stderr.String(), "waiting up to 2m0s for the database")
		})
		if !p.running() {
			t.Fatalf("migrate exited %d before the server started:\n%s", p.code, p.stderr.String())
		}
		cluster.Start(t)
		if code := p.wait(t, 2*time.Minute); code != 0 {
			t.Fatalf("migrate exit %d once the server started:\n%s", code, p.stderr.String())
		}
		if out := p.stdout.String(); !strings.Contains(out, "applied outbox") {
			t.Errorf("migrate output lacks the applied migrations:\n%s", out)
		}
	})

	t.Run("RefusedPasswordIsNotWaitedFor", func(t *testing.T) {
		u := strings.Replace(cluster.URL, "://postgres@", "://nosuchuser@", 1)
		p := start(t, "relay migrate", relayEnv("DATABASE_URL="+u, "RELAY_MIGRATE_WAIT=10m"), "migrate")
		if code := p.wait(t, time.Minute); code != 1 || strings.Contains(p.stderr.String(), "waiting up to") {
			t.Errorf("migrate as an unknown role: exit %d, stderr %q; want 1 at once, without waiting", code, p.stderr.String())
		}
	})
}
