// Package testkit is the scaffolding relay's tests share: waiting on real
// state with a bounded poll, a log buffer safe for concurrent writers,
// the fake Svix (internal/svixfake) behind a real Svix client, and a
// migrated schema of the test's own (from internal/pgtest) with all of
// these started together, and outbox rows put in a given state.
//
// Only tests import it: it imports testing, and a layout test checks that
// no production package depends on it.
package testkit
