package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// goVersion parses "1.26.8" into numbers.
func goVersion(t *testing.T, v string) []int {
	t.Helper()
	var out []int
	for _, p := range strings.Split(v, ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			t.Fatalf("version %q: %v", v, err)
		}
		out = append(out, n)
	}
	return out
}

// TestImage keeps the Dockerfile honest without a Docker engine: the Go
// build image satisfies go.mod, the runtime base is distroless on a
// supported Debian, and the version the build stamps (the context has no
// .git) is what relay version prints.
func TestImage(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(raw)
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}

	goDirective := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(string(mod))
	pinned := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\d+\.\d+\.\d+)$`).FindStringSubmatch(dockerfile)
	if goDirective == nil || pinned == nil {
		t.Fatalf("go.mod's go directive %v, Dockerfile's ARG GO_VERSION %v: want both, the latter a full x.y.z", goDirective, pinned)
	}
	if !regexp.MustCompile(`(?m)^FROM golang:\$\{GO_VERSION\}-\w+ AS build$`).MatchString(dockerfile) {
		t.Error("the build stage is not FROM golang:${GO_VERSION}-<debian>")
	}
	want, got := goVersion(t, goDirective[1]), goVersion(t, pinned[1])
	for len(want) < 3 {
		want = append(want, 0)
	}
	if got[0] != want[0] || got[1] != want[1] || got[2] < want[2] {
		t.Errorf("Dockerfile builds with Go %s, go.mod needs %s (same minor, at least that patch)", pinned[1], goDirective[1])
	}
	if !regexp.MustCompile(`(?m)^FROM gcr\.io/distroless/static-debian13:nonroot$`).MatchString(dockerfile) {
		t.Error("the runtime base is not gcr.io/distroless/static-debian13:nonroot")
	}

	// Build with the Dockerfile's own -ldflags and no VCS information (as
	// in the image), and ask the binary for its version. (The image also
	// builds with -trimpath and without cgo; left out here, they would
	// rebuild every dependency for nothing the version depends on.)
	ldflags := regexp.MustCompile(`-ldflags="([^"]*)"`).FindStringSubmatch(dockerfile)
	if ldflags == nil || !strings.Contains(ldflags[1], "${VERSION}") || !strings.Contains(dockerfile, "\nARG VERSION=") {
		t.Fatalf("the Dockerfile does not stamp ARG VERSION with -ldflags (%v)", ldflags)
	}
	bin := filepath.Join(t.TempDir(), "relay")
	build := exec.CommandContext(t.Context(), "go", "build", "-buildvcs=false",
		"-ldflags="+strings.ReplaceAll(ldflags[1], "${VERSION}", "v9.8.7-image"), "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build with the Dockerfile's flags: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); got != "relay v9.8.7-image" {
		t.Errorf("relay version in the image prints %q, want %q", got, "relay v9.8.7-image")
	}
}
