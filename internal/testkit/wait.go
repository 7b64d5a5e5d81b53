package testkit

import (
	"testing"
	"time"
)

// pollInterval is how often WaitFor reads the state it waits on.
const pollInterval = 20 * time.Millisecond

// WaitFor polls cond until it holds, failing tb with what when timeout
// passes first. cond reads real state (rows, requests the fake Svix saw,
// log lines); WaitFor is the bounded poll a test uses instead of a sleep.
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(pollInterval)
	}
}
