// Package svixfake is an in-process fake of the Svix HTTP API, spoken to by
// the real Svix Go client, for tests, benchmarks and the local demo.
//
// It serves the calls the relay makes (paths and JSON as the client sends
// them):
//
//	POST   /api/v1/app/{app}/msg                      202 MessageOut (msg_ id)
//	GET    /api/v1/app/{app}/msg                      list (one page)
//	GET    /api/v1/app/{app}/msg/{msg id or eventId}
//	POST   /api/v1/app[?get_if_exists=true]           201 new, 200 existing
//	GET    /api/v1/app, /api/v1/app/{app}
//	POST   /api/v1/event-type                         201, 409 event_type_exists
//	GET    /api/v1/event-type, /api/v1/event-type/{name}
//	POST   /api/v1/app/{app}/endpoint                 201
//	GET    /api/v1/app/{app}/endpoint                 one page: limit (50, at most 250), iterator, order
//	GET    /api/v1/app/{app}/endpoint/{id}, .../endpoint/{id}/secret
//	POST   /api/v1/app/{app}/endpoint/{id}/secret/rotate  204 (old secret kept 24 h by default)
//	DELETE /api/v1/app/{app}/endpoint/{id}            204
//	GET    /api/v1/health                             204, no token needed
//
// with the status codes, error codes and validation rules of the
// open-source Svix server: 401 authentication_failed, 403 "insufficient
// access", 404 not_found, 409 conflict for a repeated eventId within an app
// (kept forever), 413 payload_too_large above Config.MaxBodyBytes, 422
// {"detail":[{"loc","msg","type"}]}. A message create for a missing app is
// 404 unless the body's application.uid equals the path value, which creates
// the app. Endpoint creation refuses filterTypes that are not registered
// event types, whether or not any are registered, as the server does.
//
// # Idempotency
//
// A POST carrying an idempotency-key gets the first 2xx answer to the same
// (Authorization, key, path and query) replayed byte for byte for
// Config.IdempotencyTTL (12 h); the body is not compared and non-2xx
// answers are not kept. Concurrent requests with the same key are
// serialized, so only one can create a message.
//
// # Recording
//
// Every request, including faulted and dropped ones, is recorded with its
// headers (Authorization redacted), raw body, status and message id:
// Requests, StatusCount. Accepted messages keep their payload byte for byte:
// Messages, MessageByEventID, for Config.MessageRetention when it is set
// (a long run's memory stays bounded; MessageCount counts every message),
// and Config.OnMessage sees each one as it is accepted. WaitFor blocks on
// real state, so callers need no sleeps.
//
// # Faults
//
// Faults can be changed at any time while serving: SetLatency,
// SetFailureRate, SetDropConnections, SetRateLimit, Throttle, Outage,
// FailApp and the general SetInterceptor. They are checked in this order:
// interceptor, outage, dropped connection, failure rate (all before
// authentication, like infrastructure in front of the API), then after
// authentication throttle, rate limit and FailApp. Health is exempt from
// everything but the interceptor and outages. Faulted requests never reach
// the idempotency store.
//
// # Dev mode
//
// With Config.DevMode the fake delivers each accepted message to the app's
// endpoints that subscribe to its event type, with svix-id, svix-timestamp
// and svix-signature headers made by the Svix library's own signer (one
// signature per secret: after a rotation, the old secret's too until its
// grace period ends), and retries failures on
// Config.DeliveryRetrySchedule: Attempts.
//
// # Not modelled
//
// One environment is shared by all tokens; lists other than endpoints
// return a single page; update and patch calls, message attempts, transformations and the
// hosted service's own rate limits are absent.
package svixfake
