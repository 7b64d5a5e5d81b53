package demo

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestPsqlTarget(t *testing.T) {
	t.Parallel()

	tests := []struct{ url, want string }{
		{"postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable", "'postgres://postgres@127.0.0.1:55432/postgres?sslmode=disable'"},
		{"postgres://u:secret@db/app?search_path=relay&pool_max_conns=4", "'postgres://u:xxxxx@db/app'"},
		{"host=db user=u", `"$DATABASE_URL"`},
		{"postgres://u@db/app?password=secret&sslmode=disable", "'postgres://u@db/app?password=xxxxx&sslmode=disable'"},
		{"postgres://u@db/app?sslpassword=keypass&PassWord=secret", "'postgres://u@db/app?PassWord=xxxxx&sslpassword=xxxxx'"},
	}
	for _, tt := range tests {
		if got := psqlTarget(tt.url); got != tt.want {
			t.Errorf("psqlTarget(%q) = %s, want %s", tt.url, got, tt.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()

	tests := []struct{ url, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@127.0.0.1:5432/postgres"},
		{"postgres://u:secret@db/app", "postgres://u:xxxxx@db/app"},
		{"postgres://u@db/app?password=secret", "postgres://u@db/app?password=xxxxx"},
		{"postgres://u@db/app?sslmode=verify-full&sslpassword=keypass&search_path=relay", "postgres://u@db/app?search_path=relay&sslmode=verify-full&sslpassword=xxxxx"},
		{"postgres://u:a@db/app?password=b&password=c", "postgres://u:xxxxx@db/app?password=xxxxx"},
		{"host=db password=secret", "(DATABASE_URL)"},
	}
	for _, tt := range tests {
		got := redactURL(tt.url)
		if got != tt.want {
			t.Errorf("redactURL(%q) = %s, want %s", tt.url, got, tt.want)
		}
		for _, secret := range []string{"secret", "keypass"} {
			if strings.Contains(got, secret) {
				t.Errorf("redactURL(%q) = %s: shows the secret %q", tt.url, got, secret)
			}
		}
	}
}

func TestQualified(t *testing.T) {
	t.Parallel()

	if got := qualified("relay_demo", "outbox"); got != "relay_demo.outbox" {
		t.Errorf("got %s", got)
	}
	if got := qualified("Demo", "outbox"); got != `"Demo"."outbox"` {
		t.Errorf("got %s", got)
	}
}

func TestFormatLatency(t *testing.T) {
	t.Parallel()

	for d, want := range map[time.Duration]string{
		-time.Millisecond:        "0ms",
		1500 * time.Microsecond:  "1ms",
		1234 * time.Millisecond:  "1234ms",
		12345 * time.Millisecond: "12.3s",
	} {
		if got := formatLatency(d); got != want {
			t.Errorf("formatLatency(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestParseBody(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name, body, entity, problem string
	}{
		{"exact", `{"type":"asset.failed","data":{"entity_id":"a1","asset_id":"a1"}}`, "a1", ""},
		{"extra key", `{"type":"asset.failed","data":{"entity_id":"a1"},"id":"x"}`, "a1", `body is not exactly {type, data}: unexpected key "id"`},
		{"data not object", `{"type":"asset.failed","data":[1]}`, "", `body is not exactly {type, data}: "data" is not a JSON object`},
		{"not json", `nope`, "", "body is not a JSON object: invalid character 'o' in literal null (expecting 'u')"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, entity, problem := parseBody([]byte(tt.body))
			if entity != tt.entity || problem != tt.problem {
				t.Errorf("parseBody = %q, %q; want %q, %q", entity, problem, tt.entity, tt.problem)
			}
		})
	}
}

func TestReceiverAct(t *testing.T) {
	t.Parallel()

	r := &Receiver{handled: map[string]bool{}, faults: map[string]Fault{"refuse": FaultRefuse, "lose": FaultLoseAck}}
	steps := []struct {
		svixID, entity string
		try            int
		status         int
		processed, dup bool
	}{
		{"m1", "refuse", 1, http.StatusServiceUnavailable, false, false},
		{"m1", "refuse", 2, http.StatusNoContent, true, false},
		{"m2", "lose", 1, http.StatusInternalServerError, true, false},
		{"m2", "lose", 2, http.StatusOK, false, true},
		{"m3", "plain", 1, http.StatusNoContent, true, false},
		{"m3", "plain", 2, http.StatusOK, false, true},
	}
	for _, s := range steps {
		d := Delivery{SvixID: s.svixID, Try: s.try}
		if got := r.act(&d, s.entity); got != s.status || d.Processed != s.processed || d.Duplicate != s.dup {
			t.Errorf("%s try %d: status %d processed %t duplicate %t; want %d %t %t",
				s.svixID, s.try, got, d.Processed, d.Duplicate, s.status, s.processed, s.dup)
		}
	}
}

func TestPsqlInsert(t *testing.T) {
	t.Parallel()

	const insert = `-c "INSERT INTO outbox (app_id, event_type, data) VALUES ('acme', 'render.completed', jsonb_build_object('entity_id', 'render_42', 'asset_id', 'asset_42'))"`
	for _, tt := range []struct{ schema, want string }{
		{"relay_demo", `psql 'U' -c 'SET search_path TO relay_demo' ` + insert},
		{"Demo's", `psql 'U' -c 'SET search_path TO "Demo'\''s"' ` + insert},
		{"", `psql 'U' ` + insert},
	} {
		if got := psqlInsert("'U'", tt.schema); got != tt.want {
			t.Errorf("psqlInsert(%q) =\n%s\nwant\n%s", tt.schema, got, tt.want)
		}
	}
}
