package main_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// secretToken is a token the relay must never print.
const secretToken = "sk_supersecret_xyz"

func TestSettings(t *testing.T) {
	t.Parallel()

	t.Run("Refused", func(t *testing.T) {
		t.Parallel()
		const db = "DATABASE_URL=postgres://nobody@127.0.0.1:1/none"
		tests := []struct {
			name string
			env  []string
			args []string
			want []string // in stderr; "a|b" is either
		}{
			{"NoToken", []string{db}, []string{"run"}, []string{"SVIX_AUTH_TOKEN"}},
			{"EmptyToken", []string{db, "SVIX_AUTH_TOKEN="}, []string{"run"}, []string{"SVIX_AUTH_TOKEN"}},
			{"NoDatabaseURL", []string{"SVIX_AUTH_TOKEN=" + secretToken}, []string{"run"}, []string{"DATABASE_URL"}},
			{"MigrateNoDatabaseURL", []string{"SVIX_AUTH_TOKEN=" + secretToken}, []string{"migrate"}, []string{"DATABASE_URL"}},
			{"Concurrency0", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_CONCURRENCY=0"}, []string{"run"}, []string{"RELAY_CONCURRENCY", "0"}},
			{"SvixTimeoutNotADuration", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_SVIX_TIMEOUT=abc"}, []string{"run"}, []string{"RELAY_SVIX_TIMEOUT", "abc"}},
			{"SvixTimeoutNegative", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_SVIX_TIMEOUT=-1s"}, []string{"run"}, []string{"RELAY_SVIX_TIMEOUT", "-1s"}},
			{"JobTimeoutNotAboveSvixTimeout", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_SVIX_TIMEOUT=10s", "RELAY_JOB_TIMEOUT=5s"}, []string{"run"}, []string{"RELAY_JOB_TIMEOUT", "RELAY_SVIX_TIMEOUT"}},
			{"RescueNotAboveJobTimeout", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_RESCUE_AFTER=10s"}, []string{"run"}, []string{"RELAY_RESCUE_AFTER"}},
			{"JobRetentionUnderAMinute", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_JOB_RETENTION=30s"}, []string{"run"}, []string{"RELAY_JOB_RETENTION", "30s"}},
			{"DBWriters0", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_DB_WRITERS=0"}, []string{"run"}, []string{"RELAY_DB_WRITERS", "got 0"}},
			{"DBWritersAbovePool", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_DB_MAX_CONNS=8", "RELAY_DB_WRITERS=9"}, []string{"run"}, []string{"RELAY_DB_WRITERS", "RELAY_DB_MAX_CONNS (8)", "got 9"}},
			{"BackoffMinAboveMax", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_BACKOFF_MIN=2s", "RELAY_BACKOFF_MAX=1s"}, []string{"run"}, []string{"RELAY_BACKOFF_MIN", "RELAY_BACKOFF_MAX"}},
			{"LogFormat", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_LOG_FORMAT=xml"}, []string{"run"}, []string{"RELAY_LOG_FORMAT|--log-format", "xml"}},
			{"DatabaseLabelNotPrintable", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "RELAY_DATABASE_LABEL=eu\x01"}, []string{"run"}, []string{"RELAY_DATABASE_LABEL"}},
			{"BadSvixServerURL", []string{db, "SVIX_AUTH_TOKEN=" + secretToken, "SVIX_SERVER_URL=not a url"}, []string{"run"}, []string{"SVIX_SERVER_URL"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				code, stdout, stderr := relay(t, relayEnv(tt.env...), tt.args...)
				if code != 2 {
					t.Errorf("exit %d, want 2 (bad settings)", code)
				}
				for _, w := range tt.want {
					if !slices.ContainsFunc(strings.Split(w, "|"), func(w string) bool { return strings.Contains(stderr, w) }) {
						t.Errorf("stderr does not name %q:\n%s", w, stderr)
					}
				}
				if strings.Contains(stdout+stderr, secretToken) {
					t.Errorf("output contains the token:\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
				}
			})
		}
	})

	t.Run("MigrateNeedsOnlyDatabaseURL", func(t *testing.T) {
		t.Parallel()
		s := pgtest.NewSchema(t)
		code, _, stderr := relay(t, relayEnv("DATABASE_URL="+s.URL), "migrate")
		if code != 0 {
			t.Fatalf("migrate with only DATABASE_URL: exit %d: %s", code, stderr)
		}
	})

	t.Run("HelpHidesToken", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"migrate", "--help"}} {
			code, stdout, stderr := relay(t, relayEnv("SVIX_AUTH_TOKEN="+secretToken, "DATABASE_URL=postgres://u:dbsecret@127.0.0.1/db"), args...)
			if code != 0 {
				t.Errorf("relay %s: exit %d, want 0", strings.Join(args, " "), code)
			}
			out := stdout + stderr
			if !strings.Contains(out, "SVIX_AUTH_TOKEN") && args[0] == "run" {
				t.Errorf("relay %s does not document SVIX_AUTH_TOKEN:\n%s", strings.Join(args, " "), out)
			}
			for _, secret := range []string{secretToken, "dbsecret"} {
				if strings.Contains(out, secret) {
					t.Errorf("relay %s prints the secret %q:\n%s", strings.Join(args, " "), secret, out)
				}
			}
		}
	})

	// A run's logs hold neither the token Svix accepts nor one it rejects.
	t.Run("LogsHideToken", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name     string
			accepted bool
		}{{"Accepted", true}, {"Rejected", false}} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s := pgtest.NewSchema(t)
				pool := s.Pool(t)
				cfg := svixfake.Config{} // accepts DefaultToken only
				if tc.accepted {
					cfg.Tokens = []string{secretToken}
				}
				fake := svixfake.NewStarted(t, cfg)
				if code, _, stderr := relay(t, relayEnv("DATABASE_URL="+s.URL), "migrate"); code != 0 {
					t.Fatalf("migrate: exit %d: %s", code, stderr)
				}
				p := start(t, "relay run", runEnv(s.URL, fake, "SVIX_AUTH_TOKEN="+secretToken, "RELAY_LOG_LEVEL=debug"), "run")
				addr := p.httpAddr(t)
				insertRows(t, pool, 3, 3)

				if tc.accepted {
					waitDelivered(t, pool, 3, 30*time.Second)
				} else {
					// Every row tried and refused, readiness down, no row failed.
					waitFor(t, 30*time.Second, "three refused attempts", func() bool {
						return count(t, pool, "attempts > 0 AND last_error IS NOT NULL") == 3
					})
					waitFor(t, 30*time.Second, "/readyz 503", func() bool {
						code, _ := get(t, "http://"+addr+"/readyz")
						return code == http.StatusServiceUnavailable
					})
					if n := count(t, pool, "failed_at IS NOT NULL OR delivered_at IS NOT NULL"); n != 0 {
						t.Errorf("%d rows failed or delivered with a rejected token, want 0 (kept and retried)", n)
					}
					if fake.StatusCount(http.StatusUnauthorized) == 0 {
						t.Error("the fake answered no 401")
					}
					if !strings.Contains(p.stderr.String(), "SVIX_AUTH_TOKEN") {
						t.Error("the logs do not point at SVIX_AUTH_TOKEN")
					}
				}
				p.stop(t, 10*time.Second)

				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				var lastErrors string
				if err := pool.QueryRow(ctx, `SELECT coalesce(string_agg(last_error, ' '), '') FROM outbox`).Scan(&lastErrors); err != nil {
					t.Fatal(err)
				}
				for where, text := range map[string]string{"stdout": p.stdout.String(), "stderr": p.stderr.String(), "outbox.last_error": lastErrors} {
					if strings.Contains(text, secretToken) {
						t.Errorf("%s contains the token:\n%s", where, text)
					}
				}
			})
		}
	})
}
