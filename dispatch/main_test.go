package dispatch_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/mediaplatform/relay/internal/testkit"
)

// TestMain fails the package when a test leaves goroutines behind: every
// relay a test starts is stopped by then, and a stopped relay must leave
// nothing running.
func TestMain(m *testing.M) {
	testkit.VerifyTestMain(m,
		// Idle keep-alive connections of the Svix client's transport.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}
