package layout_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mediaplatform/relay"

// pkg is what go list -json says of one of the module's packages.
type pkg struct {
	ImportPath string
	Name       string
	Doc        string   // the package comment's first sentence
	Imports    []string // direct, without test imports
	Deps       []string // transitive, without test imports
}

// rel is path without the module prefix ("internal/demo").
func rel(path string) string { return strings.TrimPrefix(path, module+"/") }

// packages lists the module's packages by their path inside the module.
func packages(t *testing.T) map[string]pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list -json: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list -json: %v", err)
		}
		pkgs[rel(p.ImportPath)] = p
	}
	return pkgs
}

// standard is the set of standard-library packages the module depends on.
func standard(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if .Standard}}{{.ImportPath}}{{end}}", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	std := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		std[p] = true
	}
	return std
}

// inModule reports whether path is one of the module's packages.
func inModule(path string) bool { return strings.HasPrefix(path, module+"/") }

func TestDependencies(t *testing.T) {
	t.Parallel()
	pkgs, std := packages(t), standard(t)

	// onlyDeps fails unless every transitive dependency of name is in the
	// standard library or starts with one of allowed.
	onlyDeps := func(t *testing.T, name string, allowed ...string) {
		t.Helper()
		p, ok := pkgs[name]
		if !ok {
			t.Fatalf("no package %s", name)
		}
		for _, d := range p.Deps {
			if std[d] || slices.ContainsFunc(allowed, func(a string) bool { return strings.HasPrefix(d, a) }) {
				continue
			}
			t.Errorf("%s depends on %s", name, d)
		}
	}
	t.Run("OutboxPgxOnly", func(t *testing.T) {
		t.Parallel()
		// Product services link outbox into their own binaries.
		onlyDeps(t, "outbox", "github.com/jackc/", "golang.org/x/")
	})
	t.Run("ApikeyPgxAndOutboxOnly", func(t *testing.T) {
		t.Parallel()
		// A product's admin tools may import apikey.
		onlyDeps(t, "apikey", module+"/outbox", "github.com/jackc/", "golang.org/x/")
	})
	t.Run("MsgkeyStandardOnly", func(t *testing.T) {
		t.Parallel()
		onlyDeps(t, "internal/msgkey")
	})

	// never fails when any package of from depends on one of forbidden.
	never := func(t *testing.T, from []string, forbidden ...string) {
		t.Helper()
		for _, name := range from {
			for _, d := range pkgs[name].Deps {
				if slices.Contains(forbidden, rel(d)) && inModule(d) {
					t.Errorf("%s depends on %s", name, rel(d))
				}
			}
		}
	}
	var all, production []string
	for name := range pkgs {
		all = append(all, name)
		if !slices.Contains([]string{"internal/testkit", "internal/pgtest", "internal/layout"}, name) {
			production = append(production, name)
		}
	}
	t.Run("NothingImportsTheCommand", func(t *testing.T) {
		t.Parallel()
		never(t, all, "cmd/relay")
	})
	t.Run("PublicPackagesLeaveToolsAlone", func(t *testing.T) {
		t.Parallel()
		never(t, []string{"outbox", "apikey", "endpoints", "live"}, "internal/demo", "internal/bench", "internal/testkit")
	})
	t.Run("ProductionLeavesTestScaffoldingAlone", func(t *testing.T) {
		t.Parallel()
		never(t, production, "internal/testkit", "internal/pgtest")
	})
}

// readmeMap reads the README's Layout section: the map's lines (a package,
// then after ► the module packages it imports, continued on indented
// lines) in order, and the packages named in the first column of its
// table.
func readmeMap(t *testing.T) (lines [][]string, table []string) {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n### Layout\n")
	if !ok {
		t.Fatal("README.md has no ### Layout section")
	}
	section, _, _ = strings.Cut(section, "\n### ")
	inBlock := false
	sc := bufio.NewScanner(strings.NewReader(section))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "```"):
			inBlock = !inBlock
		case inBlock && strings.HasPrefix(l, " ") && len(lines) > 0:
			// A continuation of the line above's imports.
			for d := range strings.SplitSeq(l, ",") {
				if d = strings.TrimSpace(d); d != "" {
					lines[len(lines)-1] = append(lines[len(lines)-1], d)
				}
			}
		case inBlock:
			from, to, _ := strings.Cut(l, "►")
			line := []string{strings.TrimRight(from, "─ ")}
			for d := range strings.SplitSeq(to, ",") {
				if d = strings.TrimSpace(d); d != "" {
					line = append(line, d)
				}
			}
			lines = append(lines, line)
		case strings.HasPrefix(l, "| `"):
			first := strings.Split(l, "|")[1]
			for i, part := range strings.Split(first, "`") {
				if i%2 == 1 {
					table = append(table, part)
				}
			}
		}
	}
	if len(lines) == 0 || len(table) == 0 {
		t.Fatalf("README.md's Layout section has no map (%d lines) or no table (%d packages)", len(lines), len(table))
	}
	return lines, table
}

// The README's map is the code's: one line per package, listing exactly
// the module packages it imports, each of them on a later line (nothing
// imports upward), and its table names every package once.
func TestReadmeMap(t *testing.T) {
	t.Parallel()
	pkgs := packages(t)
	lines, table := readmeMap(t)

	pos := map[string]int{}
	for i, l := range lines {
		if _, dup := pos[l[0]]; dup {
			t.Errorf("the map lists %s twice", l[0])
		}
		pos[l[0]] = i
	}
	for name, p := range pkgs {
		if _, ok := pos[name]; !ok {
			t.Errorf("the map does not list package %s", name)
		}
		if !slices.Contains(table, name) {
			t.Errorf("the table does not list package %s", name)
		}
		var imports []string
		for _, d := range p.Imports {
			if inModule(d) {
				imports = append(imports, rel(d))
			}
		}
		if i, ok := pos[name]; ok {
			got := slices.Sorted(slices.Values(lines[i][1:]))
			slices.Sort(imports)
			if !slices.Equal(got, imports) {
				t.Errorf("the map says %s imports %v; it imports %v", name, got, imports)
			}
		}
	}
	for _, l := range lines {
		if _, ok := pkgs[l[0]]; !ok {
			t.Errorf("the map lists %s, which is not a package", l[0])
		}
		for _, d := range l[1:] {
			if pos[d] <= pos[l[0]] {
				t.Errorf("the map lists %s, which %s imports, above it", d, l[0])
			}
		}
	}
	for _, name := range table {
		if _, ok := pkgs[name]; !ok {
			t.Errorf("the table lists %s, which is not a package", name)
		}
	}
}

// Every package says what it is for in a package comment: "Package x ..."
// for a library, "Command x ..." for a program.
func TestPackageDocs(t *testing.T) {
	t.Parallel()
	for name, p := range packages(t) {
		want := "Package " + p.Name + " "
		if p.Name == "main" {
			want = "Command " + name[strings.LastIndex(name, "/")+1:] + " "
		}
		if !strings.HasPrefix(p.Doc, want) {
			t.Errorf("%s: package comment %q does not start with %q", name, p.Doc, want)
		}
	}
}
