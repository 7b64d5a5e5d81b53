package outbox_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Product services import outbox into their own binaries: it must depend on
// pgx and the standard library only.
func TestDependsOnPgxOnly(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{
		"github.com/mediaplatform/relay/outbox",
		"github.com/jackc/", // pgx and its own helpers (pgpassfile, pgservicefile, puddle)
		"golang.org/x/",     // pgx's text and sync dependencies
	}
	for _, pkg := range strings.Fields(string(out)) {
		ok := false
		for _, prefix := range allowed {
			ok = ok || strings.HasPrefix(pkg, prefix)
		}
		if !ok {
			t.Errorf("outbox depends on %s", pkg)
		}
	}
}
