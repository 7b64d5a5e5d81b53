package main_test

import (
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// composeFile is the subset of docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Build       any       `yaml:"build"`
	Image       string    `yaml:"image"`
	Command     []string  `yaml:"command"`
	Environment yaml.Node `yaml:"environment"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Restart string `yaml:"restart"`
}

// env returns the service's environment, in map or list form.
func (s composeService) env(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch s.Environment.Kind {
	case 0:
	case yaml.MappingNode:
		if err := s.Environment.Decode(&out); err != nil {
			t.Fatal(err)
		}
	case yaml.SequenceNode:
		var list []string
		if err := s.Environment.Decode(&list); err != nil {
			t.Fatal(err)
		}
		for _, kv := range list {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	default:
		t.Fatalf("environment of kind %v", s.Environment.Kind)
	}
	return out
}

var (
	// helpEnvRE finds the environment variables `relay CMD --help` documents.
	helpEnvRE = regexp.MustCompile(`\(\$([A-Z][A-Z0-9_]*)\)`)
	// interpolationRE finds ${VAR...} in the compose file.
	interpolationRE = regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)`)
)

// helpEnv is the set of environment variables of `relay args... --help`.
func helpEnv(t *testing.T, args ...string) map[string]bool {
	t.Helper()
	code, stdout, stderr := relay(t, relayEnv(), append(args, "--help")...)
	if code != 0 {
		t.Fatalf("relay %s --help: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	out := map[string]bool{}
	for _, m := range helpEnvRE.FindAllStringSubmatch(stdout+stderr, -1) {
		out[m[1]] = true
	}
	return out
}

// TestCompose keeps docker-compose.yml in step with the relay: every
// environment variable it gives a relay service is a setting of that
// service's command, the relay is wired to the database and Svix services,
// long-running services have health checks, every variable it interpolates
// is in .env.example, and docker-compose (when installed) accepts the file.
func TestCompose(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("parse docker-compose.yml: %v", err)
	}

	relayServices := 0
	for name, svc := range cf.Services {
		if svc.Build == nil {
			continue // not built from this repository
		}
		relayServices++
		t.Run(name, func(t *testing.T) {
			if len(svc.Command) == 0 {
				t.Fatal("no command: the image's default is run, say it")
			}
			cmd := svc.Command[0]
			known := helpEnv(t, cmd)
			for k := range svc.env(t) {
				if !known[k] {
					t.Errorf("environment %s is not a setting of `relay %s` (known: %v)", k, cmd, keys(known))
				}
			}
		})
	}
	if relayServices != 3 {
		t.Errorf("%d services built from this repository, want 3 (relay-migrate, relay and relay-serve)", relayServices)
	}
	if serve := cf.Services["relay-serve"]; len(serve.Command) == 0 || serve.Command[0] != "serve" || serve.env(t)["RELAY_SERVE_ADDR"] == "" {
		t.Error("no relay-serve service running `relay serve` with RELAY_SERVE_ADDR")
	}

	run, ok := cf.Services["relay"]
	if !ok || len(run.Command) == 0 || run.Command[0] != "run" {
		t.Fatal("no relay service running `relay run`")
	}
	env := run.env(t)
	for k, v := range env { // ${VAR} as a value, for url.Parse
		env[k] = interpolationRE.ReplaceAllString(strings.ReplaceAll(v, "}", ""), "x")
	}
	if u, err := url.Parse(env["DATABASE_URL"]); err != nil || u.Hostname() != "postgres" {
		t.Errorf("relay DATABASE_URL %q: want the postgres service", env["DATABASE_URL"])
	}
	if u, err := url.Parse(env["SVIX_SERVER_URL"]); err != nil || u.Hostname() != "svix-server" {
		t.Errorf("relay SVIX_SERVER_URL %q: want the svix-server service", env["SVIX_SERVER_URL"])
	}
	if _, ok := env["SVIX_AUTH_TOKEN"]; !ok {
		t.Error("relay has no SVIX_AUTH_TOKEN")
	}
	if migrate := cf.Services["relay-migrate"]; len(migrate.Command) == 0 || migrate.Command[0] != "migrate" {
		t.Error("no one-shot relay-migrate service running `relay migrate`")
	}
	for name, svc := range cf.Services {
		if name == "relay-migrate" {
			continue // one-shot
		}
		if svc.Healthcheck == nil || len(svc.Healthcheck.Test) == 0 {
			t.Errorf("service %s has no health check", name)
		}
	}
	if hc := run.Healthcheck; hc != nil && !slices.Equal(hc.Test, []string{"CMD", "/relay", "healthcheck"}) {
		t.Errorf("relay health check %v, want the binary's own healthcheck", hc.Test)
	}

	example, err := os.ReadFile("../../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range interpolationRE.FindAllStringSubmatch(string(raw), -1) {
		if !regexp.MustCompile(`(?m)^` + m[1] + `=`).Match(example) {
			t.Errorf("docker-compose.yml uses ${%s}, which .env.example does not list", m[1])
		}
	}

	t.Run("DockerCompose", func(t *testing.T) {
		bin, err := exec.LookPath("docker-compose")
		if err != nil {
			t.Skip("docker-compose not installed (apt-get install docker-compose); make lint checks the file when it is")
		}
		cmd := exec.CommandContext(t.Context(), bin, "--env-file", ".env.example", "-f", "docker-compose.yml", "config", "-q")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("docker-compose config -q: %v\n%s", err, out)
		}
	})
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
