package main_test

import (
	"os"
	"regexp"
	"testing"
)

// Every environment variable the docs name is one the relay reads: relay
// --help's table lists it (the table is generated from the flags).
func TestDocsNameOnlyRealSettings(t *testing.T) {
	t.Parallel()
	defaults := helpDefaults(t)
	varRE := regexp.MustCompile(`\b(?:RELAY|SVIX)_[A-Z0-9_]*[A-Z0-9]\b`)
	// Settings of other programs the docs mention.
	notOurs := map[string]bool{
		"SVIX_JWT_SECRET": true, "SVIX_MAIN_SECRET": true, "SVIX_DB_PASSWORD": true, "SVIX_DB_DSN": true,
		"SVIX_REDIS_DSN": true, "SVIX_QUEUE_TYPE": true, "SVIX_CACHE_TYPE": true, "SVIX_LOG_FORMAT": true,
	}
	for _, file := range []string{"../../README.md", "../../docs/operations.md", "../../docs/performance.md", "../../.env.example", "../../docker-compose.yml"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range varRE.FindAllString(string(raw), -1) {
			if _, ok := defaults[name]; !ok && !notOurs[name] {
				t.Errorf("%s names %s, which no relay command reads", file, name)
			}
		}
	}
	// Settings of dispatch.Config without a flag are not named as if they
	// were one.
	for _, file := range []string{"../../README.md", "../../docs/operations.md", "../../docs/performance.md"} {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, field := range regexp.MustCompile("`(StaleAfter|SampleInterval|JobRetention|Queue)`").FindAllString(string(raw), -1) {
			t.Errorf("%s names %s as a setting: relay run has no flag for it", file, field)
		}
	}
}
