package main

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// envTag is one `env:"..."` tag of the command line's structs.
type envTag struct {
	field, env, def string
	isBool          bool
}

// envTags walks t's fields (and those of nested commands) for env tags.
func envTags(t reflect.Type, path string) []envTag {
	var out []envTag
	for i := range t.NumField() {
		f := t.Field(i)
		if env, ok := f.Tag.Lookup("env"); ok {
			for _, name := range strings.Split(env, ",") {
				out = append(out, envTag{field: path + f.Name, env: name, def: f.Tag.Get("default"), isBool: f.Type.Kind() == reflect.Bool})
			}
		}
		if _, cmd := f.Tag.Lookup("cmd"); f.Type.Kind() == reflect.Struct && (f.Anonymous || cmd) {
			out = append(out, envTags(f.Type, path+f.Name+".")...)
		}
	}
	return out
}

// Every environment variable any command reads is in relay --help, on a
// line with its default.
func TestTopLevelHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	_, _, err := parse(context.Background(), []string{"--help"}, kong.Writers(&stdout, &stderr))
	var exit exitCode
	if !errors.As(err, &exit) || exit != 0 {
		t.Fatalf("relay --help: %v, want exit 0", err)
	}
	help := stdout.String()

	tags := envTags(reflect.TypeFor[CLI](), "")
	if len(tags) < 25 {
		t.Fatalf("found %d env tags, want every setting (the walk misses commands)", len(tags))
	}
	for _, tag := range tags {
		lines := regexp.MustCompile(`(?m)^  `+regexp.QuoteMeta(tag.env)+` +(\S+)`).FindAllStringSubmatch(help, -1)
		if lines == nil {
			t.Errorf("relay --help does not list %s (%s)", tag.env, tag.field)
			continue
		}
		want := tag.def
		switch {
		case slices.Contains(secrets, tag.env):
			want = "(secret)"
		case want == "" && tag.isBool:
			want = "false"
		case want == "":
			want = "(none)"
		}
		var listed []string
		for _, line := range lines {
			listed = append(listed, line[1])
		}
		if !slices.ContainsFunc(listed, func(d string) bool { return strings.HasPrefix(d, want) }) {
			t.Errorf("relay --help lists %s with defaults %q, want one of %q (%s)", tag.env, listed, want, tag.field)
		}
	}
	for _, name := range []string{"SVIX_SERVER_URL", "RELAY_HTTP_ADDR", "SVIX_AUTH_TOKEN", "RELAY_MIGRATE_WAIT"} {
		if !strings.Contains(help, "\n  "+name+" ") {
			t.Errorf("relay --help does not list %s", name)
		}
	}
	// The table's columns line up: each row's default and commands start
	// where the header's DEFAULT and COMMANDS do.
	_, table, ok := strings.Cut(help, "\n  VARIABLE ")
	if !ok {
		t.Fatal("relay --help has no environment table")
	}
	rows := strings.Split(strings.TrimRight("  VARIABLE "+table, "\n"), "\n")
	defCol, cmdCol := strings.Index(rows[0], "DEFAULT"), strings.Index(rows[0], "COMMANDS")
	for _, r := range rows[1:] {
		if len(r) <= cmdCol || r[defCol-1] != ' ' || r[defCol] == ' ' || r[cmdCol-1] != ' ' || r[cmdCol] == ' ' {
			t.Errorf("environment row out of line with the header %q:\n%s", rows[0], r)
		}
	}
}
