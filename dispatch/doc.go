// Package dispatch drains the outbox into Svix.
//
// A feeder claims pending outbox rows (FOR UPDATE SKIP LOCKED, woken by the
// outbox's NOTIFY and by a poll), marks them enqueued and inserts one River
// job per row in the same transaction. River's workers send each row with
// Message.Create, using a key derived from the row (Key) as both Svix's
// idempotency key and the message's eventId, so a retry, a crash or a second
// replica never makes Svix accept one row twice. Each outcome is written to
// the row (batched with other workers' outcomes, and durable before the job
// completes):
//
//	2xx, or 409 on the eventId   delivered_at, svix_message_id
//	429                          retried after Retry-After; not an attempt
//	5xx, timeout, network        attempts, last_error; retried with capped backoff;
//	                             failed_at once the row is older than MaxAge
//	401, 403                     attempts, last_error; retried; readiness false
//	other 4xx                    failed_at, last_error; kept until outbox_replay
//
// Several relays may run on one database: claims skip each other's locked
// rows, River runs maintenance on its elected leader only, and River's unique
// jobs keep one live job per row.
package dispatch
