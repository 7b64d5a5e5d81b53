package apikey_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A product's admin tools may import apikey: it depends on pgx, outbox
// (its app_id rules) and the standard library only.
func TestDependsOnPgxOnly(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := []string{
		"github.com/mediaplatform/relay/apikey",
		"github.com/mediaplatform/relay/outbox",
		"github.com/jackc/",
		"golang.org/x/",
	}
	for _, pkg := range strings.Fields(string(out)) {
		ok := false
		for _, prefix := range allowed {
			ok = ok || strings.HasPrefix(pkg, prefix)
		}
		if !ok {
			t.Errorf("apikey depends on %s", pkg)
		}
	}
}
