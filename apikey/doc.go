// Package apikey manages the API keys of relay's public HTTP API and
// authenticates requests with them.
//
// A key looks like "rk_live_" followed by 43 base62 characters (256 random
// bits). It is shown once, when created; the database keeps only its
// SHA-256 (unique index, looked up by hash, so comparing keys leaks no
// timing) and a short prefix for people to tell keys apart. A key belongs to
// one account, the app_id of the outbox (the Svix application uid). Revoking
// a key takes effect on the next request: nothing is cached.
//
// The package depends on pgx and the standard library only, so a product
// can create keys from its own admin tools.
//
// A product with API keys of its own implements Authenticator instead and
// hands it to endpoints.Config.
package apikey
