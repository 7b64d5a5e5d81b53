// Package demo runs the relay's whole flow in one process, for `relay demo`
// (`make demo`): a committed state change becomes a signed webhook that a
// receiver verifies, with nothing to sign up for.
//
// Run migrates a PostgreSQL schema (the outbox, River's tables and a small
// product table, renders), starts the relay (dispatch.Relay) against a dev
// Svix server (internal/svixfake in DevMode: it signs every accepted message
// with the Svix library's signer and delivers it to the app's endpoints,
// retrying failures), and registers a receiver on it through the real Svix
// Go client: one endpoint per app, subscribed to every event type. The
// receiver verifies each delivery with svix.NewWebhook(secret).Verify and
// acts on each svix-id once.
//
// It then writes events as a product service would: a transaction that
// updates a render and emits render.completed; the same rolled back (nothing
// is delivered); a plain SQL insert; an invalid insert, which the database
// refuses; and one event of each type in one transaction. The receiver
// answers the first delivery of one message 503 and loses the
// acknowledgement of another, to show Svix's retries and the receiver's
// deduplication. Each delivery is printed as it arrives, then a summary;
// Run fails when an event is not verified within Config.Timeout.
//
// ServeSvix runs only the dev Svix server and the receiver, so that `relay
// run` in another terminal can deliver to them.
package demo
