package main_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mediaplatform/relay/internal/pgtest"
	"github.com/mediaplatform/relay/internal/svixfake"
)

// While its database is down, a relay's /readyz answers a plain reason,
// without the driver's detail (host, port, user, database), which goes to
// the log instead.
func TestReadyzHidesDriverDetail(t *testing.T) {
	t.Parallel()
	cluster := pgtest.StartCluster(t)
	fake := svixfake.NewStarted(t, svixfake.Config{})
	if code, _, stderr := relay(t, relayEnv("DATABASE_URL="+cluster.URL), "migrate"); code != 0 {
		t.Fatalf("relay migrate: exit %d: %s", code, stderr)
	}
	p := start(t, "relay run", runEnv(cluster.URL, fake), "run")
	addr := p.waitReady(t)

	cluster.Stop(t)
	var body string
	waitFor(t, 30*time.Second, "/readyz 503 with the database down", func() bool {
		var code int
		code, body = get(t, "http://"+addr+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if body != "not ready: database\n" {
		t.Errorf("/readyz with the database down: %q, want %q", body, "not ready: database\n")
	}
	port := fmt.Sprint(cluster.Port)
	for _, detail := range []string{port, "127.0.0.1", "user=", "postgres"} {
		if strings.Contains(body, detail) {
			t.Errorf("/readyz tells the client %q: %q", detail, body)
		}
	}
	// Each 503 logs its own error; the first may be the server's
	// termination notice, which names no address, so ask again until a
	// connection attempt's error (host and port) is logged.
	waitFor(t, 10*time.Second, "the log to hold the detail", func() bool {
		get(t, "http://"+addr+"/readyz")
		for _, l := range p.logLines() {
			if l["msg"] == "not ready" && l["reason"] == "database" && strings.Contains(fmt.Sprint(l["error"]), port) {
				return true
			}
		}
		return false
	})

	cluster.Start(t)
	waitFor(t, 30*time.Second, "/readyz 200 once the database is back", func() bool {
		code, _ := get(t, "http://"+addr+"/readyz")
		return code == http.StatusOK
	})
	p.stop(t, 15*time.Second)
}
