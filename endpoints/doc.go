// Package endpoints is relay's endpoint management API: an http.Handler
// with which customers create, list, read and delete the webhook endpoints
// of their account, read and rotate their signing secrets, at
// /v1/webhook-endpoints. Each account is one Svix application (uid = the
// outbox's app_id), each endpoint one Svix endpoint whose filterTypes are
// its event_types; Svix holds the endpoints and their secrets, this package
// holds nothing of them.
//
// A product mounts the handler in its own server, with its own
// authenticator or the built-in API keys (package apikey); `relay serve`
// serves it standalone. The API is described by an OpenAPI 3.1 document,
// OpenAPI(), which the tests check the handler against.
//
// Routes:
//
//	POST   /v1/webhook-endpoints                     create: 201, with the signing secret
//	GET    /v1/webhook-endpoints                     list: ?limit=1..100 (20), ?cursor=
//	GET    /v1/webhook-endpoints/{id}                read
//	DELETE /v1/webhook-endpoints/{id}                200 {"id", "deleted": true}
//	GET    /v1/webhook-endpoints/{id}/secret         {"secret": "whsec_..."}
//	POST   /v1/webhook-endpoints/{id}/secret/rotate  new secret; the old one stays valid 24 hours
//
// An endpoint of another account is a 404, like one that does not exist.
// POST requests honour Idempotency-Key (kept Config.IdempotencyTTL, 24 h).
// Failures answer one envelope, {"error": {"type", "code", "message",
// "param", "request_id"}}, with X-Request-Id on every response; see
// docs/api.md for the codes.
package endpoints
